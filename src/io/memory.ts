// Giving memory back to the system. A burst of large requests leaves buffers that V8 frees only at
// its next garbage collection, and an idle daemon may not run one for a long time: its RSS would
// stay at the burst's height. The rpc server calls this when what it held has drained.
import v8 from 'node:v8';
import vm from 'node:vm';

let collect: (() => void) | undefined;

/** Runs a full garbage collection (V8's `gc`, exposed once at first use). */
export function collectGarbage(): void {
  if (!collect) {
    v8.setFlagsFromString('--expose-gc');
    collect = vm.runInNewContext('gc') as () => void;
  }
  collect();
}
