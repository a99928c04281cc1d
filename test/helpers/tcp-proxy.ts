import net from 'node:net';

/** One HTTP request head a client sent through the proxy. */
export interface ProxiedRequest {
  method: string;
  path: string;
  /** Header names in lower case. */
  headers: Record<string, string>;
  /** The port its connection was forwarded to. */
  target: number;
}

/**
 * A TCP proxy on a free port in front of `127.0.0.1:<targetPort>`, so a test can cut live
 * connections (a dropped Wi-Fi, a load balancer restart) without touching the server.
 */
export interface TcpProxy {
  port: number;
  url: string;
  /** Every request head seen so far, in order (keep-alive connections carry several). */
  requests: ProxiedRequest[];
  /** Destroys every open connection, both sides, now. */
  cutAll(): void;
  /** New connections go to this port from now on (open ones stay where they are). */
  setTarget(port: number): void;
  close(): Promise<void>;
}

/** Reads request heads out of a client's byte stream; bodies are skipped by Content-Length. */
function requestHeadReader(onRequest: (request: Omit<ProxiedRequest, 'target'>) => void): (chunk: Buffer) => void {
  let buffer = Buffer.alloc(0);
  let bodyLeft = 0;
  return (chunk) => {
    buffer = Buffer.concat([buffer, chunk]);
    for (;;) {
      if (bodyLeft > 0) {
        const skip = Math.min(bodyLeft, buffer.length);
        buffer = buffer.subarray(skip);
        bodyLeft -= skip;
        if (bodyLeft > 0) return;
      }
      const end = buffer.indexOf('\r\n\r\n');
      if (end < 0) return;
      const [requestLine, ...lines] = buffer.subarray(0, end).toString('latin1').split('\r\n');
      buffer = buffer.subarray(end + 4);
      const [method, path] = requestLine.split(' ');
      const headers: Record<string, string> = {};
      for (const line of lines) {
        const colon = line.indexOf(':');
        headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
      }
      bodyLeft = Number(headers['content-length'] ?? 0);
      onRequest({ method, path, headers });
    }
  };
}

export function startTcpProxy(targetPort: number): Promise<TcpProxy> {
  let target = targetPort;
  const pairs = new Set<{ client: net.Socket; upstream: net.Socket }>();
  const requests: ProxiedRequest[] = [];
  const server = net.createServer((client) => {
    const forwardedTo = target;
    const upstream = net.connect(forwardedTo, '127.0.0.1');
    const pair = { client, upstream };
    pairs.add(pair);
    const readHeads = requestHeadReader((request) => requests.push({ ...request, target: forwardedTo }));
    client.on('data', readHeads);
    client.pipe(upstream);
    upstream.pipe(client);
    const close = () => {
      pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    // A reset on either side is the point of this proxy, not a test failure.
    client.on('error', close).on('close', close);
    upstream.on('error', close).on('close', close);
  });
  const cutAll = () => {
    for (const { client, upstream } of pairs) {
      client.destroy();
      upstream.destroy();
    }
    pairs.clear();
  };
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      resolve({
        port,
        url: `http://127.0.0.1:${port}`,
        requests,
        cutAll,
        setTarget: (port) => {
          target = port;
        },
        close: () =>
          new Promise<void>((done) => {
            cutAll();
            server.close(() => done());
          }),
      });
    });
  });
}
