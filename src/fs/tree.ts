// The sheepfs namespace as data: one table of fixed files, directories derived from it, and one
// dynamic directory (volume/) whose entries are the mounted VDIs. Pure: no I/O, no state.

export type InfoSource = 'clusterInfo' | 'nodeList' | 'nodeInfo' | 'vdiList';
export type ControlCommand = 'mount' | 'unmount' | 'snapshot' | 'rollback' | 'delete' | 'clone';

export type FsPath =
  | { kind: 'directory'; path: string }
  | { kind: 'volumeDirectory' }
  | { kind: 'info'; source: InfoSource }
  | { kind: 'control'; command: ControlCommand }
  | { kind: 'volume'; spec: string }
  | { kind: 'absent' };

export const volumeDirectoryPath = '/volume';

/** Every fixed file of the tree. Adding a file is one line here plus its handler. */
const fileTable: ReadonlyArray<readonly [string, FsPath]> = [
  ['/cluster/info', { kind: 'info', source: 'clusterInfo' }],
  ['/node/list', { kind: 'info', source: 'nodeList' }],
  ['/node/info', { kind: 'info', source: 'nodeInfo' }],
  ['/vdi/list', { kind: 'info', source: 'vdiList' }],
  ['/vdi/mount', { kind: 'control', command: 'mount' }],
  ['/vdi/unmount', { kind: 'control', command: 'unmount' }],
  ['/vdi/snapshot', { kind: 'control', command: 'snapshot' }],
  ['/vdi/rollback', { kind: 'control', command: 'rollback' }],
  ['/vdi/delete', { kind: 'control', command: 'delete' }],
  ['/vdi/clone', { kind: 'control', command: 'clone' }],
];

function parentOf(path: string): string {
  const slash = path.lastIndexOf('/');
  return slash <= 0 ? '/' : path.slice(0, slash);
}

function baseNameOf(path: string): string {
  return path.slice(path.lastIndexOf('/') + 1);
}

/** Directory path -> names in it, built once from the file table (plus volume/, always there). */
function buildDirectories(): ReadonlyMap<string, readonly string[]> {
  const children = new Map<string, string[]>([['/', []]]);
  const addChild = (parent: string, name: string): void => {
    const names = children.get(parent) ?? [];
    if (!names.includes(name)) names.push(name);
    children.set(parent, names);
  };
  for (const filePath of [...fileTable.map(([path]) => path), `${volumeDirectoryPath}/x`]) {
    const directory = parentOf(filePath);
    addChild('/', baseNameOf(directory));
    if (directory !== volumeDirectoryPath) addChild(directory, baseNameOf(filePath));
  }
  children.set(volumeDirectoryPath, []);
  return children;
}

const directories = buildDirectories();
const filesByPath: ReadonlyMap<string, FsPath> = new Map(fileTable);

/** What a path names. `volume/X` is returned for any X; the caller checks it is mounted. */
export function parsePath(path: string): FsPath {
  if (path === volumeDirectoryPath) return { kind: 'volumeDirectory' };
  if (directories.has(path)) return { kind: 'directory', path };
  const file = filesByPath.get(path);
  if (file !== undefined) return file;
  const volumePrefix = `${volumeDirectoryPath}/`;
  if (path.startsWith(volumePrefix)) {
    const spec = path.slice(volumePrefix.length);
    if (spec.length > 0 && !spec.includes('/')) return { kind: 'volume', spec };
  }
  return { kind: 'absent' };
}

/** Names in a fixed directory (volume/ is listed by the caller from its mounted set). */
export function fixedChildrenOf(directoryPath: string): readonly string[] {
  return directories.get(directoryPath) ?? [];
}
