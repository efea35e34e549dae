// How dog, sheepfs and the tests find the key to prove, without being told (docs/security.md):
// `-k FILE` if given; else the copy the sheep says it keeps in its store (on this host, readable by
// its owner only), else /etc/sheepdog/cluster.key: the one whose key id the sheep names is used.
import path from 'node:path';
import { SdError } from '../engine/errors.js';
import { defaultKeyFile, fileExists, readKeyFile } from '../io/key-file.js';
import { systemRandom, type Random } from '../io/random.js';
import { keyIdOf, type ClientAuth } from './auth.js';

/** A key file path a sheep may name: absolute, short, plain. Anything else is ignored. */
function plausibleHint(file: string | undefined): file is string {
  return file !== undefined && file.length <= 4096 && path.isAbsolute(file) && !file.includes('\0') && path.basename(file) === 'cluster.key';
}

/**
 * How dog, sheepfs and the tests find the key to prove: `explicit` (-k FILE) alone when given,
 * else the sheep's store copy it names, else `defaultKeyFile`.
 */
export function fileKeyAuth(explicit?: string, random: Random = systemRandom, fallback = defaultKeyFile): ClientAuth {
  return {
    random,
    keyFor(keyId, hint) {
      if (explicit !== undefined) {
        const key = readKeyFile(explicit);
        if (keyIdOf(key) !== keyId) {
          throw new SdError('AUTH', `the key in ${explicit} is not this cluster's (key id ${keyIdOf(key)}; the cluster's is ${keyId})`);
        }
        return key;
      }
      const candidates = [...new Set([...(plausibleHint(hint) ? [hint] : []), fallback])];
      const problems: string[] = [];
      for (const file of candidates) {
        let key: Buffer;
        try {
          key = readKeyFile(file);
        } catch (error) {
          // A missing default file is the normal case on the cluster's own host: not worth a word.
          if (file === fallback && !fileExists(file)) continue;
          problems.push((error as SdError).message);
          continue;
        }
        if (keyIdOf(key) === keyId) return key;
        problems.push(`${file} holds another cluster's key`);
      }
      const why = problems.length > 0 ? `: ${problems.join('; ')}` : '';
      throw new SdError('AUTH', `no key for this cluster (key id ${keyId})${why}; give the cluster key file with -k FILE`);
    },
  };
}
