import js from '@eslint/js';
import tseslint from 'typescript-eslint';
import importX, { createNodeResolver } from 'eslint-plugin-import-x';

/**
 * The layers of src/, lowest first: a folder may import only from folders before it, so
 * bytes flow one way (formats ← strategies ← build ← transfer ← server, migration,
 * client, cli). Type-only imports count too: a type cycle is still a cycle.
 */
const LAYERS = [
  ['core', 'generated'],
  ['wal'],
  ['store', 'changes', 'ownership'],
  ['snapshot'],
  ['wire'],
  ['strategies'],
  ['build'],
  ['durability'],
  ['archive'],
  ['transfer'],
  ['migration'],
  ['client'],
  ['cluster'],
  ['server'],
  ['cli'],
];
const layerZones = LAYERS.flatMap((folders, level) =>
  folders.map((folder) => ({
    target: `./src/${folder}`,
    from: LAYERS.slice(level + 1)
      .flat()
      .map((higher) => `./src/${higher}`),
    message: `src/${folder} sits below these folders (see LAYERS in eslint.config.mjs)`,
  })),
).filter((zone) => zone.from.length > 0);

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'src/generated/**', 'native/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_' }],
      '@typescript-eslint/restrict-template-expressions': [
        'error',
        { allowNumber: true, allowBoolean: true },
      ],
    },
  },
  {
    files: ['src/**/*.ts'],
    plugins: { 'import-x': importX },
    settings: {
      'import-x/resolver-next': [createNodeResolver({ extensions: ['.ts', '.js'] })],
      'import-x/parsers': { '@typescript-eslint/parser': ['.ts'] },
    },
    rules: {
      'import-x/no-cycle': ['error', { ignoreExternal: true }],
      'import-x/no-restricted-paths': ['error', { zones: layerZones }],
    },
  },
  {
    // Errors in src/ are domain errors with a stable code and reason (see src/core/errors.ts).
    files: ['src/**/*.ts'],
    ignores: ['src/core/errors.ts', 'src/generated/**'],
    rules: {
      'no-restricted-syntax': [
        'error',
        {
          selector: 'NewExpression[callee.name="Error"]',
          message:
            'Throw a ShardsnapError through the helpers of src/core/errors.ts (internal(), invalidArgument(), asError(), ...), not a bare Error.',
        },
      ],
    },
  },
  { files: ['**/*.mjs', 'bin/**'], ...tseslint.configs.disableTypeChecked },
);
