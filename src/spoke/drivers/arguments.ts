// What a driver accepts from the hub, checked before anything runs: both drivers refuse the same input,
// and the libvirt scripts only ever see values that cannot be read as shell syntax or options.
import { DriverError } from '../driver.ts';
import type { CapsulSpec } from '../protocol.ts';

export const vmIdPattern = /^capsul-[a-z0-9]{10}$/;
export const maxMemoryMb = 1_048_576;
export const maxVcpus = 256;
export const maxSshKeysPerCapsul = 20;
export const maxSshKeyLength = 16_384;
const maxImageFileLength = 255;

// A segment starts with a letter or digit: no "..", no hidden files, nothing a tool could read as an option.
const imageFileSegment = /^[A-Za-z0-9][A-Za-z0-9._+-]*$/;
// "<type> <base64>[ <comment>]" on one line of printable ASCII; the comment is written to a file, never run.
const sshKeyPattern = /^(ssh-[a-z0-9-]+|ecdsa-sha2-nistp(256|384|521)|sk-[a-z0-9.@-]+) [A-Za-z0-9+/]+={0,2}( [\x20-\x7e]*)?$/;

/** A value quoted for an error message: one line, short. */
export function quoted(value: unknown): string {
  const text = JSON.stringify(value) ?? String(value);
  return text.length > 60 ? `${text.slice(0, 57)}…` : text;
}

export function checkVmId(vmId: unknown): string {
  if (typeof vmId !== 'string' || !vmIdPattern.test(vmId)) {
    throw new DriverError(`${quoted(vmId)} is not a capsul id (capsul- and 10 lowercase letters or digits)`);
  }
  return vmId;
}

export function checkSpec(spec: CapsulSpec): CapsulSpec {
  const { memoryMb, vcpus, imageFile, sshPublicKeys } = spec;
  if (!Number.isSafeInteger(memoryMb) || memoryMb < 1 || memoryMb > maxMemoryMb) {
    throw new DriverError(`memory ${quoted(memoryMb)} MB is not between 1 and ${maxMemoryMb}`);
  }
  if (!Number.isSafeInteger(vcpus) || vcpus < 1 || vcpus > maxVcpus) {
    throw new DriverError(`${quoted(vcpus)} vcpus is not between 1 and ${maxVcpus}`);
  }
  checkImageFile(imageFile);
  if (!Array.isArray(sshPublicKeys) || sshPublicKeys.length < 1 || sshPublicKeys.length > maxSshKeysPerCapsul) {
    throw new DriverError(`a capsul takes 1 to ${maxSshKeysPerCapsul} SSH public keys`);
  }
  sshPublicKeys.forEach(checkSshPublicKey);
  return spec;
}

/** A path relative to the image directory, made of safe characters, that cannot climb out of it. */
export function checkImageFile(imageFile: unknown): string {
  const ok =
    typeof imageFile === 'string' &&
    imageFile.length <= maxImageFileLength &&
    imageFile.split('/').every((segment) => imageFileSegment.test(segment));
  if (!ok) throw new DriverError(`${quoted(imageFile)} is not an image file name (a relative path of letters, digits, . _ + -)`);
  return imageFile;
}

export function checkSshPublicKey(key: unknown): string {
  if (typeof key !== 'string' || key.length > maxSshKeyLength || !sshKeyPattern.test(key)) {
    throw new DriverError(`${quoted(key)} is not an SSH public key on one line`);
  }
  return key;
}
