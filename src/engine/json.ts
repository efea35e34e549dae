// Data that survives JSON as it is: the shape of the VDI registry on disk and in cluster events.

/** Plain JSON-able data only (no bigint, no Buffer): drivers persist and ship it as JSON. */
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
