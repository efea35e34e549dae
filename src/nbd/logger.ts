// The slice of a pino logger the NBD server uses, so callers may pass pino itself or nothing.

export interface NbdLogger {
  info(fields: object, message?: string): void;
  warn(fields: object, message?: string): void;
  error(fields: object, message?: string): void;
}

export const silentLogger: NbdLogger = {
  info: () => {},
  warn: () => {},
  error: () => {},
};
