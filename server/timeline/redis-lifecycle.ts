import type Redis from 'ioredis';
import type { Cluster } from 'ioredis';
import { BusUnavailableError } from './bus';

/** The connection is lost: reconnecting, or given up. New work is refused at once meanwhile. */
export function isLost(connection: Redis | Cluster): boolean {
  return connection.status === 'reconnecting' || connection.status === 'close' || connection.status === 'end';
}

/** Resolves once the connection is ready; rejects if it ends first. */
export function whenConnected(connection: Redis | Cluster): Promise<void> {
  if (connection.status === 'ready') return Promise.resolve();
  return new Promise((resolve, reject) => {
    const ready = () => {
      connection.off('end', end);
      resolve();
    };
    const end = () => {
      connection.off('ready', ready);
      reject(new BusUnavailableError('the Redis connection was closed'));
    };
    connection.once('ready', ready);
    connection.once('end', end);
  });
}

/** Closes a connection: QUIT when connected, otherwise stops its reconnecting. */
export async function closeConnection(connection: Redis | Cluster): Promise<void> {
  if (connection.status !== 'ready') {
    // Not connected: a QUIT would wait in the offline queue; stop reconnecting instead.
    connection.disconnect();
    return;
  }
  try {
    await connection.quit();
  } catch {
    // The connection dropped meanwhile: nothing left to release but the socket.
    connection.disconnect();
  }
}
