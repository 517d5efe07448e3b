-- PLACEHOLDER on branch histidx only (see 21_up_placeholder.sql): drop this pair when merging.
SELECT 1;
