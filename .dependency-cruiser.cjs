// The import directions of docs/architecture.md ("Layout"), checked by `npm run lint` (dependency-cruiser).
// A rule broken is an error naming the import; change the code, or the rule and the docs together.
/** @type {import('dependency-cruiser').IConfiguration} */
module.exports = {
  forbidden: [
    {
      name: 'domain-is-pure',
      comment: 'src/domain decides and folds: it imports only itself, emmett\'s types, and node:crypto for hashing (no I/O, clock or randomness is used from it)',
      severity: 'error',
      from: { path: '^src/domain/' },
      // node:crypto for createHash only (an SSH key's fingerprint); ids and times arrive in commands.
      to: { pathNot: ['^src/domain/', '^src/types/', '^crypto$'], dependencyTypesNot: ['type-only'] },
    },
    {
      name: 'domain-types-only-from-emmett',
      severity: 'error',
      from: { path: '^src/domain/' },
      to: { dependencyTypes: ['type-only'], pathNot: ['^src/domain/', '^src/types/', 'node_modules/@event-driven-io/emmett/'] },
    },
    {
      name: 'spoke-stands-alone',
      comment: 'the spoke installs alone on a VM host: it imports nothing of capsul outside src/spoke',
      severity: 'error',
      from: { path: '^src/spoke/' },
      to: { path: '^src/', pathNot: ['^src/spoke/', '^src/types/'] },
    },
    {
      name: 'read-models-only-read',
      comment:
        'src/read holds the queries of each read model: it imports only itself, the domain (types, units, billing) and src/db (the event store), never the ledger, projections writers, hub, CLI or jobs that call it',
      severity: 'error',
      from: { path: '^src/read/' },
      to: { path: '^src/', pathNot: ['^src/read/', '^src/domain/', '^src/db/', '^src/types/'] },
    },
    {
      name: 'nothing-below-the-hub-imports-it',
      comment: 'the hub composes the rest; only the hub itself and the composition root (src/server.ts) import src/hub',
      severity: 'error',
      from: { path: '^src/', pathNot: ['^src/hub/', '^src/server\\.ts$'] },
      to: { path: '^src/hub/' },
    },
    {
      name: 'payments-know-no-http',
      comment: 'a payment provider decides, reconciles and talks to its provider\'s API; its pages and webhook endpoint are the hub\'s route adapters (src/hub/payments/)',
      severity: 'error',
      from: { path: '^src/payments/' },
      to: { path: 'node_modules/(fastify|@fastify/|fastify-plugin|light-my-request)' },
    },
    {
      name: 'no-cycles',
      severity: 'error',
      from: {},
      to: { circular: true },
    },
    {
      name: 'no-cycles-between-folders',
      comment: 'folders depend one way: no folder reaches back to one that depends on it, through any files',
      severity: 'error',
      scope: 'folder',
      from: {},
      to: { circular: true },
    },
    {
      name: 'product-code-never-imports-tests-or-bench',
      severity: 'error',
      from: { path: '^src/' },
      to: { path: '^(test|bench)/' },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    exclude: { path: '^src/audit/standalone/' },
  },
};
