export { startLab, startLabPools, DEFAULT_DISK_SIZE, type LabOptions, type RunningLab } from "./lab.js";
export { knownFiles, type KnownFiles } from "./known-files.js";
export { FAULT_NAMES, type FaultName } from "./faults.js";
export { XapiFailure } from "./xapi-failure.js";
