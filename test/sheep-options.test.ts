// sheep's option errors in the original's words (3ebe5ea sheep/sheep.c, lib/net.c), and -l by
// the original's level names. Pure: parseSheepOptions, no daemon.
import { describe, expect, it } from 'vitest';
import { CommanderError } from 'commander';
import { parseSheepOptions, versionText } from '../src/sheep/options.js';
import { logLevelName, parseLogLevel, pinoLevel } from '../src/sheep/log-level.js';
import { packageVersion } from '../src/engine/version.js';

const base = ['--nbd', 'off', '/tmp/store'];

function refusal(args: string[]): string {
  try {
    parseSheepOptions([...args, ...base]);
  } catch (error) {
    return (error as Error).message;
  }
  return 'accepted';
}

describe('sheep options', () => {
  it('refuses bad values with the original messages', () => {
    expect(refusal(['-p', '0'])).toBe("Invalid port number '0'");
    expect(refusal(['-p', '70000'])).toBe("Invalid port number '70000'");
    expect(refusal(['-p', 'x'])).toBe("Invalid port number 'x'");
    expect(refusal(['-y', 'nowhere'])).toBe("Invalid address: 'nowhere'");
    expect(refusal(['-b', 'nowhere'])).toBe("Bad address 'nowhere'");
    expect(refusal(['-z', '4294967296'])).toBe("Invalid zone id '4294967296': must be an integer between 0 and 4294967295");
    expect(refusal(['-V', '0'])).toBe("Invalid number of vnodes '0': must be an integer between 1 and 65535");
    expect(refusal(['-V', '65536'])).toBe("Invalid number of vnodes '65536': must be an integer between 1 and 65535");
    expect(refusal(['-g', '-V', '10'])).toBe("Options '-g' and '-V' can not be both specified");
    expect(refusal(['-V', '10', '-g'])).toBe("Options '-g' and '-V' can not be both specified");
    expect(refusal(['-c', 'corosync'])).toBe("Invalid cluster driver 'corosync'");
    expect(refusal(['-l', 'loud'])).toBe("Invalid log level 'loud'");
    expect(refusal(['-l', 'dir=/var/log'])).toBe('invalid option dir=/var/log');
    expect(refusal(['--bogus'])).toBe("unrecognized option '--bogus'\nTry 'sheep --help' for more information.");
  });

  it('takes -l by the original names, as level=NAME, or by pino names', () => {
    const level = (text: string) => parseSheepOptions(['-l', text, ...base]).logLevel;
    expect(parseSheepOptions(base).logLevel).toBe(6);
    expect(level('debug')).toBe(7);
    expect(level('level=err')).toBe(3);
    expect(level('warning')).toBe(4);
    expect(level('warn')).toBe(4);
    expect(level('emerg')).toBe(0);
    expect(['emerg', 'crit', 'err', 'warning', 'notice', 'info', 'debug'].map((n) => pinoLevel(parseLogLevel(n)!))).toEqual([
      'fatal', 'fatal', 'error', 'warn', 'info', 'info', 'debug',
    ]);
    expect(logLevelName(5)).toBe('notice');
    expect(logLevelName(9)).toBe('unknown loglevel');
  });

  it('-v prints the version as the original did', () => {
    expect(versionText).toBe(`Sheepdog daemon version ${packageVersion}\n\nSupported features:\n\tCluster drivers: zookeeper local\n\tMiscellaneous: nbd\n`);
    const written: string[] = [];
    const write = process.stdout.write.bind(process.stdout);
    process.stdout.write = ((chunk: string) => written.push(chunk) > 0) as typeof process.stdout.write;
    try {
      expect(() => parseSheepOptions(['-v'])).toThrow(CommanderError);
    } finally {
      process.stdout.write = write;
    }
    expect(written.join('')).toBe(versionText);
  });
});
