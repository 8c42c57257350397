export interface ApiKeysTable {
  id: string;
  name: string;
  secret_hash: string;
  secret_hint: string;
  scopes: string[];
  created_at: Date;
  revoked_at: Date | null;
  last_used_at: Date | null;
}
