export interface IdempotencyKeysTable {
  api_key_id: string;
  key: string;
  request_hash: string;
  method: string;
  path: string;
  state: 'in_flight' | 'completed';
  lock_token: string | null;
  locked_until: Date | null;
  response_status: number | null;
  response_body: string | null;
  created_at: Date;
  completed_at: Date | null;
}
