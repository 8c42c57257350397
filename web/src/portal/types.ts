import type { paths } from '../api/schema';

type Json<T> = T extends { content: { 'application/json': infer J } } ? J : never;

export type Overview = Json<paths['/v1/portal-sessions/{id}/overview']['get']['responses'][200]>;
export type PortalSubscription = Overview['subscriptions'][number];
export type Market = Overview['market'];
export type Preview = Json<
  paths['/v1/portal-sessions/{id}/subscriptions/{sub}/change/preview']['post']['responses'][200]
>;
export type PlanOption = Json<
  paths['/v1/portal-sessions/{id}/plans']['get']['responses'][200]
>['data'][number];
export type InvoiceRow = Json<
  paths['/v1/portal-sessions/{id}/invoices']['get']['responses'][200]
>['data'][number];
