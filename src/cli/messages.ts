// Prompts of the original dog (3ebe5ea dog/*.c), word for word: shared by the commands that ask
// them and by the tests that check them.

export const rollbackPrompt = 'This operation discards any changes made since the previous\nsnapshot was taken.  Continue? [yes/no]: ';

export const recoverForcePrompt =
  'Caution! Please try starting all the cluster nodes normally before\n' +
  'running this command.\n\n' +
  'The cluster may need to be force recovered if:\n' +
  '  - the master node fails to start because of epoch mismatch; or\n' +
  '  - some nodes fail to start after a cluster shutdown.\n\n' +
  'Are you sure you want to continue? [yes/no]: ';

/** `-s 0`: a snapshot id counts from 1 (the original's vdi_parser). */
export const snapshotIdZero = 'The snapshot id must be larger than zero';
