export interface AuditLogTable {
  id: string;
  api_key_id: string;
  action: string;
  resource_type: string;
  resource_id: string | null;
  request_id: string | null;
  status: number;
  at: Date;
}
