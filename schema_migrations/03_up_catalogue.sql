-- Version 3: the catalogue, with capsul-flask's table and column names. A capsul's price is captured in
-- its creation event, so changing a price here never rewrites past charges.
CREATE TABLE vm_sizes (
  id                     TEXT PRIMARY KEY,
  dollars_per_month      NUMERIC(8, 2) NOT NULL CHECK (dollars_per_month > 0),
  vcpus                  INT NOT NULL CHECK (vcpus > 0),
  memory_mb              INT NOT NULL CHECK (memory_mb > 0),
  bandwidth_gb_per_month INT NOT NULL CHECK (bandwidth_gb_per_month >= 0)
);
INSERT INTO vm_sizes (id, dollars_per_month, vcpus, memory_mb, bandwidth_gb_per_month) VALUES
  ('f1-xs',  5.33, 1,  512,  500),
  ('f1-s',   7.16, 1, 1024, 1000),
  ('f1-m',  12.50, 1, 2048, 2000),
  ('f1-l',  20.50, 2, 3072, 3000),
  ('f1-x',  27.50, 3, 4096, 4000),
  ('f1-xx', 50.00, 4, 8192, 5000);

CREATE TABLE os_images (
  id                       TEXT PRIMARY KEY,
  template_image_file_name TEXT NOT NULL,
  description              TEXT NOT NULL,
  deprecated               BOOLEAN NOT NULL DEFAULT FALSE
);
INSERT INTO os_images (id, template_image_file_name, description, deprecated) VALUES
  ('debian12',     'debian/debian-12-genericcloud-amd64.qcow2',   'Debian 12 (bookworm)',  FALSE),
  ('debian13',     'debian/debian-13-genericcloud-amd64.qcow2',   'Debian 13 (trixie)',    FALSE),
  ('alpine322',    'alpine/nocloud_alpine-3.22-x86_64.qcow2',     'Alpine Linux 3.22',     FALSE),
  ('ubuntu24',     'ubuntu/noble-server-cloudimg-amd64.img',      'Ubuntu 24.04 (noble)',  FALSE),
  ('rocky9',       'rocky/Rocky-9-GenericCloud-Base.latest.qcow2','Rocky Linux 9',         FALSE),
  ('openbsd78',    'openbsd/openbsd-7.8.qcow2',                   'OpenBSD 7.8',           FALSE),
  ('ubuntu22',     'ubuntu/jammy-server-cloudimg-amd64.img',      'Ubuntu 22.04 (jammy)',  TRUE);
