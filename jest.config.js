/** @type {import('jest').Config} */
module.exports = {
  testEnvironment: 'node',
  // The SDK's tests live in its package; those that need a real server use test/helpers.
  roots: ['<rootDir>/test', '<rootDir>/client-sdk/test'],
  testMatch: ['**/*.test.ts'],
  transform: {
    '^.+\\.ts$': ['ts-jest', { tsconfig: 'tsconfig.json', isolatedModules: true }],
    // @apidevtools/json-schema-ref-parser (the OpenAPI validator's) ships ESM only; jest runs
    // CommonJS, so ts-jest converts it.
    '^.+/node_modules/@apidevtools/json-schema-ref-parser/.+\\.js$': ['ts-jest', { tsconfig: { allowJs: true }, isolatedModules: true }],
  },
  transformIgnorePatterns: ['/node_modules/(?!@apidevtools/json-schema-ref-parser/)'],
  // The client SDK is ESM source: its relative imports end in `.js` and name `.ts` files.
  moduleNameMapper: {
    '^(\\.{1,2}/.*)\\.js$': '$1',
    // The packages as integrators import them (README examples), from source.
    '^timeline-service$': '<rootDir>/server/index.ts',
    '^@timeline/client$': '<rootDir>/client-sdk/src/index.ts',
  },
  testTimeout: 30000,
  reporters: ['default', '<rootDir>/test/helpers/summary-reporter.js'],
  // Builds dist/ once (npm run build) when the run includes an e2e suite that starts `npm start`'s output.
  globalSetup: '<rootDir>/test/helpers/global-setup.ts',
  // Integration suites start servers; keep them from fighting over two cores.
  maxWorkers: 2,
};
