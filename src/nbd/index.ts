// Public entry of the NBD front end.
export {
  prepareNbdTls,
  startNbdServer,
  type NbdLogger,
  type NbdServer,
  type NbdServerOptions,
  type NbdTls,
  type NbdTlsSettings,
} from './server.js';
