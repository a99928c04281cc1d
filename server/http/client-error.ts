import { STATUS_CODES } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import type { ErrorBody } from '../../client-sdk/src/types';
import { statusOf, type HttpErrorCode } from '../contract/error-codes';

/**
 * Requests Node's HTTP parser refuses before express sees them (headers over
 * `--max-http-header-size`, a malformed request line, a header timeout) are answered here, in
 * the API's JSON error shape instead of Node's bare `400 Bad Request` text. Node calls this
 * for the `server`'s `clientError` event; the socket is closed after the answer, as Node does.
 */
export function answerClientError(log: Logger): (error: NodeJS.ErrnoException, socket: Duplex) => void {
  return (error, socket) => {
    // No stack: a malformed request is the client's business, not a fault of ours.
    log.debug({ code: error.code, reason: error.message }, 'client error: request refused by the HTTP parser');
    const tcp = socket as Socket;
    // Only before any response byte: after that the socket carries a response already (a
    // keep-alive connection's earlier one, or an open stream), which a second head would corrupt.
    if (error.code !== 'ECONNRESET' && tcp.writable && tcp.bytesWritten === 0) tcp.write(rawResponse(error.code));
    tcp.destroy();
  };
}

function rawResponse(parserCode: string | undefined): string {
  const [code, message] = answerFor(parserCode);
  const status = statusOf(code);
  const body: ErrorBody = { error: { code, message } };
  const json = JSON.stringify(body);
  return (
    `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ''}\r\n` +
    'Content-Type: application/json; charset=utf-8\r\n' +
    `Content-Length: ${Buffer.byteLength(json)}\r\n` +
    'Connection: close\r\n\r\n' +
    json
  );
}

/** The contract code (hence Node's own choice of status) for each parser error, with a message. */
function answerFor(parserCode: string | undefined): [HttpErrorCode, string] {
  switch (parserCode) {
    case 'HPE_HEADER_OVERFLOW':
      return ['headers_too_large', 'The request headers are larger than the limit'];
    case 'HPE_CHUNK_EXTENSIONS_OVERFLOW':
      return ['payload_too_large', 'The request body has chunk extensions larger than the limit'];
    case 'ERR_HTTP_REQUEST_TIMEOUT':
      return ['request_timeout', 'The request was not received in time'];
    default:
      return ['bad_request', 'The request is not valid HTTP/1.1'];
  }
}
