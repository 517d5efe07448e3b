-- Version 4 → 3: back to one statement per projection change, and to guards without WHEN clauses.
DROP FUNCTION IF EXISTS capsul_apply_projection(jsonb);
DROP FUNCTION IF EXISTS capsul_is_projection(text);

DROP TRIGGER capsul_stream_forward_only ON emt_streams;
CREATE TRIGGER capsul_stream_forward_only BEFORE UPDATE ON emt_streams
  FOR EACH ROW EXECUTE FUNCTION capsul_stream_forward_only();

DROP TRIGGER capsul_projection_guard ON accounts;
CREATE TRIGGER capsul_projection_guard BEFORE INSERT OR UPDATE OR DELETE ON accounts FOR EACH STATEMENT
  EXECUTE FUNCTION capsul_projection_guard('accounts open with their first payment: use capsul record-payment');
DROP TRIGGER capsul_projection_guard ON payments;
CREATE TRIGGER capsul_projection_guard BEFORE INSERT OR UPDATE OR DELETE ON payments FOR EACH STATEMENT
  EXECUTE FUNCTION capsul_projection_guard('use capsul record-payment, capsul invalidate-payment or capsul reinstate-payment');
DROP TRIGGER capsul_projection_guard ON vms;
CREATE TRIGGER capsul_projection_guard BEFORE INSERT OR UPDATE OR DELETE ON vms FOR EACH STATEMENT
  EXECUTE FUNCTION capsul_projection_guard('use capsul create-vm or capsul delete-vm');
