// The browser bundle: one minified ESM file with every dependency inside, for a page that
// loads the SDK with a plain <script type="module"> and no bundler. Its gzipped size is the
// core's size budget: the build prints it and fails above BUDGET_BYTES.
import { build } from 'esbuild';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';

const BUDGET_BYTES = 8 * 1024;

const path = (file) => fileURLToPath(new URL(`../${file}`, import.meta.url));

const COMMON = {
  bundle: true,
  format: 'esm',
  platform: 'browser',
  target: ['es2022'],
  minify: true,
  legalComments: 'inline',
  logLevel: 'warning',
};

/** Leaves out what src/react imports from the core: the app bundles the core once, for both. */
const coreExternal = {
  name: 'core-external',
  setup(build) {
    build.onResolve({ filter: /^\.\.\// }, (args) =>
      args.importer.includes('/src/react/') ? { path: args.path, external: true } : undefined,
    );
  },
};

const kb = (bytes) => `${(bytes / 1024).toFixed(2)} KB`;

function sizes(contents) {
  return { minified: contents.length, gzipped: gzipSync(contents).length };
}

/** Writes dist/timeline-client.browser.js, prints its size and the React binding's, checks the budget. */
export async function bundleBrowser() {
  const core = await build({
    ...COMMON,
    entryPoints: [path('src/index.ts')],
    outfile: path('dist/timeline-client.browser.js'),
    sourcemap: true,
    write: true,
    metafile: true,
  });
  const [coreFile] = Object.keys(core.metafile.outputs).filter((file) => file.endsWith('.js'));
  const coreSize = sizes(await readFile(coreFile));

  // The React binding as an app's bundler adds it: the core and React are shared, not counted.
  const react = await build({
    ...COMMON,
    entryPoints: [path('src/react/index.ts')],
    external: ['react'],
    plugins: [coreExternal],
    write: false,
  });
  const reactSize = sizes(react.outputFiles[0].contents);

  console.log(
    `@timeline/client browser bundle (core, with uuid and eventsource-parser): ${kb(coreSize.minified)} minified, ` +
      `${kb(coreSize.gzipped)} gzipped (budget ${kb(BUDGET_BYTES)})`,
  );
  console.log(`@timeline/client/react on top of it (React not included): ${kb(reactSize.gzipped)} gzipped`);
  if (coreSize.gzipped > BUDGET_BYTES) {
    throw new Error(
      `The browser bundle is ${kb(coreSize.gzipped)} gzipped, over its ${kb(BUDGET_BYTES)} budget: ` +
        'trim the core or move the new code to a subpath export',
    );
  }
}
