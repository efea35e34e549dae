// The log, passed in: pino in production (whose Logger has this shape), a silent or recording one
// in tests and the simulator.

export interface Log {
  debug(fields: object, message?: string): void;
  info(fields: object, message?: string): void;
  warn(fields: object, message?: string): void;
  error(fields: object, message?: string): void;
}

export const silentLog: Log = { debug() {}, info() {}, warn() {}, error() {} };
