-- PLACEHOLDER on branch histidx only: version 21 belongs to another helper's branch (it redefines
-- capsul_apply_projection). This empty step keeps the versions contiguous so 22 can be tested here;
-- drop this pair when merging.
SELECT 1;
