/** @type {import('jest').Config} */
module.exports = {
  testEnvironment: 'node',
  // The SDK's tests live in its package; those that need a real server use test/helpers.
  roots: ['<rootDir>/test', '<rootDir>/client-sdk/test'],
  testMatch: ['**/*.test.ts'],
  transform: {
    '^.+\\.ts$': ['ts-jest', { tsconfig: 'tsconfig.json', isolatedModules: true }],
  },
  // The client SDK is ESM source: its relative imports end in `.js` and name `.ts` files.
  moduleNameMapper: { '^(\\.{1,2}/.*)\\.js$': '$1' },
  testTimeout: 30000,
  reporters: ['default', '<rootDir>/test/helpers/summary-reporter.js'],
  // Builds dist/ once (npm run build) when the run includes an e2e suite that starts `npm start`'s output.
  globalSetup: '<rootDir>/test/helpers/global-setup.ts',
  // Integration suites start servers; keep them from fighting over two cores.
  maxWorkers: 2,
};
