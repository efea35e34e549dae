// The release every program reports (`--version`); test/version.test.ts keeps it equal to
// package.json's.
export const packageVersion = '0.1.0';
