import { createHash } from 'node:crypto';
import { invalid } from './errors.ts';

const keyTypes = [
  'ssh-ed25519',
  'ssh-rsa',
  'ecdsa-sha2-nistp256',
  'ecdsa-sha2-nistp384',
  'ecdsa-sha2-nistp521',
  'sk-ssh-ed25519@openssh.com',
  'sk-ecdsa-sha2-nistp256@openssh.com',
];
export const maxSshKeyLength = 16_384;
export const maxSshKeysPerCapsul = 20;

/** Validates an OpenSSH public key line ("<type> <base64> [comment]") and returns it normalised. */
export function parseSshPublicKey(text: string): { type: string; blob: string; comment: string; line: string } {
  const line = text.trim().replace(/[ \t]+/g, ' ');
  if (line.length > maxSshKeyLength) throw invalid(`an SSH public key may be at most ${maxSshKeyLength} characters`);
  if (/[\r\n\0]/.test(line)) throw invalid('an SSH public key is a single line');
  const [type = '', blob = '', ...rest] = line.split(' ');
  if (!keyTypes.includes(type)) {
    throw invalid(`"${line.slice(0, 40)}" is not an SSH public key: it should start with one of ${keyTypes.slice(0, 3).join(', ')} …`);
  }
  if (!/^[A-Za-z0-9+/]{16,}={0,2}$/.test(blob) || blob.length % 4 !== 0) {
    throw invalid(`the ${type} key's base64 part is damaged or missing`);
  }
  // The blob starts with its own type name, length-prefixed: catches a key pasted with the wrong type.
  const decoded = Buffer.from(blob, 'base64');
  const nameLength = decoded.readUInt32BE(0);
  if (nameLength > 64 || decoded.subarray(4, 4 + nameLength).toString('latin1') !== type) {
    throw invalid(`the key's data does not match its type ${type}`);
  }
  const comment = rest.join(' ');
  if (!/^[\x20-\x7e]*$/.test(comment)) throw invalid('an SSH key comment may only hold printable ASCII');
  return { type, blob, comment, line: comment ? `${type} ${blob} ${comment}` : `${type} ${blob}` };
}

/** OpenSSH's SHA256 fingerprint of a key's base64 blob, as `ssh-keygen -lf` prints it. */
export function sshFingerprint(blob: string): string {
  return `SHA256:${createHash('sha256').update(Buffer.from(blob, 'base64')).digest('base64').replace(/=+$/, '')}`;
}
