// Public entry of the NBD front end.
export { startNbdServer, type NbdServer, type NbdServerOptions, type NbdLogger } from './server.js';
