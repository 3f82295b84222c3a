import { sql, type Kysely } from 'kysely';

// Frozen in time: this file never imports application code.

export async function up(db: Kysely<any>): Promise<void> {
  // A tenant's own Slack webhook. The URL is the credential (whoever has it can post), so only its
  // AES-256-GCM ciphertext is stored, made by the application with ENCRYPTION_KEY; the ciphertext
  // names its key, so a rotated key can still be told apart and re-encrypted.
  await db.schema
    .createTable('tenant_slack_integrations')
    .addColumn('tenant_id', 'uuid', (col) => col.primaryKey().references('tenants.id').onDelete('cascade'))
    .addColumn('encrypted_webhook_url', 'text', (col) => col.notNull())
    .addColumn('default_channel', 'text')
    // Null: any channel.
    .addColumn('allowed_channels', sql`text[]`, (col) => col.check(sql`cardinality(allowed_channels) > 0`))
    .addColumn('created_at', 'timestamptz', (col) => col.notNull().defaultTo(sql`now()`))
    .addColumn('updated_at', 'timestamptz', (col) => col.notNull().defaultTo(sql`now()`))
    .execute();

  // Each tenant's Standard Webhooks signing secret for its callbacks, made the first time it is
  // needed. After a rotation the previous one still signs until previous_expires_at.
  await db.schema
    .createTable('tenant_webhook_secrets')
    .addColumn('tenant_id', 'uuid', (col) => col.primaryKey().references('tenants.id').onDelete('cascade'))
    .addColumn('secret', 'text', (col) => col.notNull())
    .addColumn('previous_secret', 'text')
    .addColumn('previous_expires_at', 'timestamptz')
    .addColumn('created_at', 'timestamptz', (col) => col.notNull().defaultTo(sql`now()`))
    .addCheckConstraint('tenant_webhook_secrets_previous_check', sql`(previous_secret is null) = (previous_expires_at is null)`)
    .execute();
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropTable('tenant_webhook_secrets').execute();
  await db.schema.dropTable('tenant_slack_integrations').execute();
}
