-- Version 15 → 16: each OS image names the user its cloud image lets in with the customer's SSH keys
-- (cloud-init's default user), so the capsul page can give a ready `ssh user@address` line. A new image
-- must name its own: there is no default.
ALTER TABLE os_images ADD COLUMN login_user TEXT;
UPDATE os_images SET login_user = CASE
  WHEN id LIKE 'debian%' THEN 'debian'
  WHEN id LIKE 'ubuntu%' THEN 'ubuntu'
  WHEN id LIKE 'alpine%' THEN 'alpine'
  WHEN id LIKE 'rocky%' THEN 'rocky'
  WHEN id LIKE 'openbsd%' THEN 'openbsd'
  WHEN id LIKE 'fedora%' THEN 'fedora'
  WHEN id LIKE 'centos%' THEN 'cloud-user'
  WHEN id LIKE 'archlinux%' OR id LIKE 'arch%' THEN 'arch'
  WHEN id LIKE 'freebsd%' THEN 'freebsd'
  ELSE 'root'
END;
ALTER TABLE os_images ALTER COLUMN login_user SET NOT NULL,
  ADD CONSTRAINT os_images_login_user_is_a_user_name CHECK (login_user ~ '^[a-z_][a-z0-9_-]{0,31}$');
