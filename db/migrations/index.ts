import type { Migration } from 'kysely/migration';
import * as init from './0001_init.js';
import * as taskScheduling from './0002_task_scheduling.js';
import * as security from './0003_security.js';
import * as taskListing from './0004_task_listing.js';
import * as taskOperations from './0005_task_operations.js';
import * as taskEvents from './0006_task_events.js';
import * as roles from './0007_roles.js';
import * as tenantAccess from './0008_tenant_access.js';
import * as tenantIntegrations from './0009_tenant_integrations.js';
import * as delay from './0010_delay.js';
import * as slackIntegrationChanges from './0011_slack_integration_changes.js';
import * as queueTurnIndex from './0012_queue_turn_index.js';
import * as queueHeadIndex from './0013_queue_head_index.js';
import * as claimWithinCap from './0014_claim_within_cap.js';
import * as claimGenericPlan from './0015_claim_generic_plan.js';
import * as auditTenantKey from './0016_audit_tenant_key.js';
import * as watchedTaskEvents from './0017_watched_task_events.js';

/** Every migration, in order. Listed statically so the compiled image needs no directory scan. */
export const migrations: Record<string, Migration> = {
  '0001_init': init,
  '0002_task_scheduling': taskScheduling,
  '0003_security': security,
  '0004_task_listing': taskListing,
  '0005_task_operations': taskOperations,
  '0006_task_events': taskEvents,
  '0007_roles': roles,
  '0008_tenant_access': tenantAccess,
  '0009_tenant_integrations': tenantIntegrations,
  '0010_delay': delay,
  '0011_slack_integration_changes': slackIntegrationChanges,
  '0012_queue_turn_index': queueTurnIndex,
  '0013_queue_head_index': queueHeadIndex,
  '0014_claim_within_cap': claimWithinCap,
  '0015_claim_generic_plan': claimGenericPlan,
  '0016_audit_tenant_key': auditTenantKey,
  '0017_watched_task_events': watchedTaskEvents,
};
