// The files the libvirt driver writes for a new capsul: its libvirt domain and its cloud-init NoCloud
// seed. Every value is checked before it gets here; XML and YAML escaping is done anyway.
import type { CapsulSpec } from '../protocol.ts';

export type DomainFiles = { vmId: string; memoryMb: number; vcpus: number; diskPath: string; seedPath: string; network: string };

export function domainXml({ vmId, memoryMb, vcpus, diskPath, seedPath, network }: DomainFiles): string {
  return `<domain type='kvm'>
  <name>${xml(vmId)}</name>
  <memory unit='MiB'>${memoryMb}</memory>
  <vcpu>${vcpus}</vcpu>
  <os>
    <type>hvm</type>
    <boot dev='hd'/>
  </os>
  <features>
    <acpi/>
    <apic/>
  </features>
  <cpu mode='host-model'/>
  <clock offset='utc'/>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='${xml(diskPath)}'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <disk type='file' device='cdrom'>
      <driver name='qemu' type='raw'/>
      <source file='${xml(seedPath)}'/>
      <target dev='sda' bus='sata'/>
      <readonly/>
    </disk>
    <interface type='network'>
      <source network='${xml(network)}'/>
      <model type='virtio'/>
    </interface>
    <serial type='pty'/>
    <console type='pty'/>
    <rng model='virtio'>
      <backend model='random'>/dev/urandom</backend>
    </rng>
  </devices>
</domain>
`;
}

/** cloud-config: the keys as double-quoted YAML scalars (a JSON string is one), so no key can add YAML of its own. */
export function cloudInitUserData(spec: Pick<CapsulSpec, 'sshPublicKeys'>): string {
  const keys = spec.sshPublicKeys.map((key) => `  - ${JSON.stringify(key)}\n`).join('');
  return `#cloud-config\nssh_authorized_keys:\n${keys}`;
}

export function cloudInitMetaData(vmId: string): string {
  return `instance-id: ${JSON.stringify(vmId)}\nlocal-hostname: ${JSON.stringify(vmId)}\n`;
}

function xml(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/'/g, '&apos;').replace(/"/g, '&quot;');
}
