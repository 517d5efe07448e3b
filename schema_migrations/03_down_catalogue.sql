-- Version 3 → 2: drops the catalogue (capsuls keep the price captured in their events).
DROP TABLE IF EXISTS os_images, vm_sizes;
