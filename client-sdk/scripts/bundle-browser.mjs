// One ESM file with every dependency inside, for a page that loads the SDK with a plain
// <script type="module"> and no bundler.
import { build } from 'esbuild';

await build({
  entryPoints: [new URL('../src/index.ts', import.meta.url).pathname],
  outfile: new URL('../dist/timeline-client.browser.js', import.meta.url).pathname,
  bundle: true,
  format: 'esm',
  platform: 'browser',
  target: ['es2022'],
  sourcemap: true,
  legalComments: 'inline',
  logLevel: 'warning',
});
