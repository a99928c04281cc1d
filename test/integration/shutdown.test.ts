import net from 'node:net';
import { startService } from '../helpers/service';
import { within } from '../helpers/wait';

describe('service.close()', () => {
  it('does not wait for a connection that never sent a request', async () => {
    const svc = await startService();
    const { port } = new URL(svc.url);
    const socket = net.connect(Number(port), '127.0.0.1');
    await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
    const closedByServer = new Promise<void>((resolve) => socket.once('close', () => resolve()));
    try {
      // Node would otherwise keep it until its request timeout (minutes).
      await within(svc.close(), 10000, 'the service to close with a silent connection open');
      await within(closedByServer, 1000, 'the silent connection to be closed');
    } finally {
      socket.destroy();
    }
  });
});
