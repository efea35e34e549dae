// The log level a sheep runs at, by the original's names and numbers (syslog's: emerg 0 ... debug
// 7), as `sheep -l` and `dog node log level` speak them, mapped onto pino's levels.

/** The original's table: the index is the level. */
export const logLevelNames = ['emerg', 'alert', 'crit', 'err', 'warning', 'notice', 'info', 'debug'] as const;
export type LogLevelName = (typeof logLevelNames)[number];
export const logLevelDefault = 6; // info

/** pino has no emerg, alert, crit or notice: each maps to the nearest level that still shows it. */
const pinoLevelOf: Record<LogLevelName, string> = {
  emerg: 'fatal',
  alert: 'fatal',
  crit: 'fatal',
  err: 'error',
  warning: 'warn',
  notice: 'info',
  info: 'info',
  debug: 'debug',
};

/** pino's own names, which `sheep -l` has accepted since the start, as the original's levels. */
const levelOfPino: Record<string, number> = { fatal: 2, error: 3, warn: 4, info: 6, debug: 7, trace: 7 };

/** The level number of a name (the original's or pino's), or undefined. */
export function parseLogLevel(text: string): number | undefined {
  const index = (logLevelNames as readonly string[]).indexOf(text);
  if (index >= 0) return index;
  return Object.hasOwn(levelOfPino, text) ? levelOfPino[text] : undefined;
}

export function logLevelName(level: number): string {
  return logLevelNames[level] ?? 'unknown loglevel';
}

export function pinoLevel(level: number): string {
  const name = logLevelNames[level];
  return name === undefined ? 'info' : pinoLevelOf[name];
}

/** How a sheep changes the level of its own log at run time (pino's `level` in production). */
export interface LogLevelControl {
  /** The original's level number. */
  readonly level: number;
  set(level: number): void;
}

/** A control over something with pino's settable `level` field. */
export function logLevelControl(target: { level: string }, initial: number): LogLevelControl {
  let current = initial;
  target.level = pinoLevel(initial);
  return {
    get level() {
      return current;
    },
    set(level: number) {
      current = level;
      target.level = pinoLevel(level);
    },
  };
}
