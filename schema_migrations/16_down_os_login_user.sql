-- Version 16 → 15: the OS images no longer name their login user.
ALTER TABLE os_images DROP COLUMN IF EXISTS login_user;
