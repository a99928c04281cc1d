import { createServer, IncomingMessage, ServerResponse, type Server } from 'node:http';
import type { Express } from 'express';

interface AppClasses {
  Request: typeof IncomingMessage;
  Response: typeof ServerResponse;
}

const classesOfApp = new WeakMap<Express, AppClasses>();

/**
 * Request and response classes whose prototypes are the app's `app.request` and
 * `app.response` (the prototypes express gives every request and response), made once per app.
 */
function appClasses(app: Express): AppClasses {
  const known = classesOfApp.get(app);
  if (known) return known;
  class AppRequest extends IncomingMessage {}
  class AppResponse extends ServerResponse<IncomingMessage> {}
  // Each class's prototype takes the app's place in the chain: express's methods and the app
  // stay reachable, and the app now hands out the class's prototype.
  Object.setPrototypeOf(AppRequest.prototype, app.request);
  Object.setPrototypeOf(AppResponse.prototype, app.response);
  app.request = AppRequest.prototype as Express['request'];
  app.response = AppResponse.prototype as Express['response'];
  const classes: AppClasses = { Request: AppRequest, Response: AppResponse as typeof ServerResponse };
  classesOfApp.set(app, classes);
  return classes;
}

/**
 * The HTTP server of `app`, whose requests and responses are built with express's prototypes
 * from the start (Node's `IncomingMessage` and `ServerResponse` server options).
 *
 * express gives each request and response its prototypes with `Object.setPrototypeOf` as they
 * come in; V8 then gives every one of them a hidden class of its own (measured: about 2 KiB of
 * maps and descriptor arrays per request and response pair), which an open stream keeps for
 * hours. Built as instances of classes whose prototypes those are, express's `setPrototypeOf`
 * changes nothing and they share their shapes.
 */
export function createHttpServer(app: Express): Server {
  const { Request, Response } = appClasses(app);
  return createServer({ IncomingMessage: Request, ServerResponse: Response }, app);
}
