import { createServer, IncomingMessage, ServerResponse, type Server } from 'node:http';
import type { Socket } from 'node:net';
import type { Express } from 'express';

/**
 * The HTTP server of `app`, whose requests and responses are built with express's own
 * prototypes (`app.request`, `app.response`) from the start.
 *
 * express gives each request and response its prototypes with `Object.setPrototypeOf` as they
 * come in; V8 then gives every one of them a hidden class of its own (measured: about 2 KiB of
 * maps and descriptor arrays per request and response pair), which an open stream keeps for
 * hours. Built with those prototypes already (Node's `IncomingMessage` and `ServerResponse`
 * server options), express's `setPrototypeOf` changes nothing, and they share their shapes.
 */
export function createHttpServer(app: Express): Server {
  function AppRequest(this: IncomingMessage, socket: Socket): void {
    IncomingMessage.call(this, socket);
  }
  AppRequest.prototype = app.request;
  function AppResponse(this: ServerResponse, req: IncomingMessage, options?: object): void {
    (ServerResponse as unknown as (this: ServerResponse, req: IncomingMessage, options?: object) => void).call(this, req, options);
  }
  AppResponse.prototype = app.response;
  return createServer(
    {
      IncomingMessage: AppRequest as unknown as typeof IncomingMessage,
      ServerResponse: AppResponse as unknown as typeof ServerResponse,
    },
    app,
  );
}
