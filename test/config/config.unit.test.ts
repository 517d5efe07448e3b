// The hub's configuration: defaults, and one clear refusal per bad value.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ConfigError, readConfig } from '../../src/config.ts';

describe('hub configuration', () => {
  it('given nothing set, runs a development hub on port 3000 with the outbox instead of SMTP', () => {
    const config = readConfig({});
    assert.equal(config.port, 3000);
    assert.equal(config.baseUrl, 'http://localhost:3000');
    assert.equal(config.mode, 'both');
    assert.equal(config.secretKey, undefined);
    assert.deepEqual(config.adminEmails, []);
    assert.equal(config.mail, undefined);
    assert.equal(config.mailFrom, 'capsul <no-reply@localhost>');
    assert.equal(config.trustProxy, false);
    assert.equal(config.supportEmail, 'support@localhost');
  });

  it("names the provider on statements: PROVIDER_NAME (default the site's host) and PROVIDER_ADDRESS lines split at |", () => {
    assert.deepEqual(readConfig({}).provider, { name: 'localhost', addressLines: [] });
    const named = readConfig({ PROVIDER_NAME: ' Example Co-op ', PROVIDER_ADDRESS: '1 Example Street | Springfield 12345 ||' });
    assert.deepEqual(named.provider, { name: 'Example Co-op', addressLines: ['1 Example Street', 'Springfield 12345'] });
  });

  it('logs for a person in development (npm start) and JSON lines for a production hub, requests at debug and info', () => {
    const development = readConfig({});
    assert.deepEqual([development.logFormat, development.requestLogLevel], ['pretty', 'debug']);
    const hub = readConfig({ CAPSUL_MODE: 'hub' });
    assert.deepEqual([hub.logFormat, hub.requestLogLevel], ['json', 'info']);
    assert.equal(readConfig({}).metricsToken, undefined, 'no /metrics unless asked for');
    assert.equal(readConfig({ METRICS_TOKEN: ' 0123456789abcdef ' }).metricsToken, '0123456789abcdef');
    const chosen = readConfig({ CAPSUL_MODE: 'hub', LOG_FORMAT: ' Pretty ', LOG_REQUESTS: 'silent' });
    assert.deepEqual([chosen.logFormat, chosen.requestLogLevel], ['pretty', 'silent']);
  });

  it('reads admins case-insensitively and SMTP with its port from the TLS mode', () => {
    const config = readConfig({
      ADMIN_EMAILS: ' Boss@Capsul.org, ops@capsul.org ',
      MAIL_SERVER: 'smtp.capsul.org',
      MAIL_USE_TLS: 'tls',
      MAIL_USERNAME: 'capsul',
      MAIL_PASSWORD: 'pw',
      SECRET_KEY: 's'.repeat(32),
      BASE_URL: 'https://capsul.org/',
      TRUST_PROXY: 'loopback',
    });
    assert.deepEqual(config.adminEmails, ['boss@capsul.org', 'ops@capsul.org']);
    assert.deepEqual(config.mail, { host: 'smtp.capsul.org', port: 465, tls: 'tls', user: 'capsul', password: 'pw' });
    assert.equal(readConfig({ MAIL_SERVER: 'localhost', MAIL_USE_TLS: 'none', MAIL_PORT: '25' }).mail?.tls, 'none');
    assert.equal(config.baseUrl, 'https://capsul.org');
    assert.equal(config.mailFrom, 'capsul <no-reply@capsul.org>');
    assert.equal(config.trustProxy, 'loopback');
    assert.equal(readConfig({ MAIL_SERVER: 'smtp.x.org' }).mail?.port, 587);
    assert.equal(readConfig({ MAIL_SERVER: 'smtp.x.org', MAIL_PORT: '2525' }).mail?.port, 2525);
  });

  it('tells ADMIN_EMAILS of incidents unless OPS_EMAILS names others; alerts after 10 minutes, 5 webhook and 3 job failures', () => {
    assert.deepEqual(readConfig({ ADMIN_EMAILS: 'boss@capsul.org' }).opsEmails, ['boss@capsul.org']);
    assert.deepEqual(readConfig({ ADMIN_EMAILS: 'boss@capsul.org', OPS_EMAILS: ' Pager@Capsul.org ,ops@capsul.org' }).opsEmails, [
      'pager@capsul.org',
      'ops@capsul.org',
    ]);
    assert.deepEqual(readConfig({}).alerts, { hostOfflineMinutes: 10, waitingMinutes: 10, webhookFailures: 5, jobFailures: 3 });
    assert.deepEqual(
      readConfig({ ALERT_HOST_OFFLINE_MINUTES: '3', ALERT_WAITING_MINUTES: '60', ALERT_WEBHOOK_FAILURES: '1', ALERT_JOB_FAILURES: '10' })
        .alerts,
      { hostOfflineMinutes: 3, waitingMinutes: 60, webhookFailures: 1, jobFailures: 10 },
    );
  });

  it('suspends at $0.00 with 14 days of grace by default; a point below zero, or at an overdraft of 0 (no suspension), is taken', () => {
    assert.deepEqual([readConfig({}).suspensionPointCents, readConfig({}).graceDays], [0, 14]);
    assert.equal(readConfig({ SUSPENSION_POINT_DOLLARS: '-2.50', GRACE_DAYS: '7' }).suspensionPointCents, -250);
    assert.equal(readConfig({ OVERDRAFT_DOLLARS: '0' }).suspensionPointCents, 0);
  });

  const refusals: [Record<string, string>, RegExp][] = [
    [
      { SUSPENSION_POINT_DOLLARS: '1' },
      /^SUSPENSION_POINT_DOLLARS must be zero or below, and not below the overdraft \(-10\.00, OVERDRAFT_DOLLARS\), not 1\.00$/,
    ],
    [
      { SUSPENSION_POINT_DOLLARS: '-12', OVERDRAFT_DOLLARS: '10' },
      /^SUSPENSION_POINT_DOLLARS must be zero or below, and not below the overdraft/,
    ],
    [{ SUSPENSION_POINT_DOLLARS: 'soon' }, /^SUSPENSION_POINT_DOLLARS must be an amount of dollars like 0 or -2\.50, not "soon"$/],
    [{ GRACE_DAYS: '0' }, /^GRACE_DAYS must be a whole number from 1 to 365, not "0"$/],
    [{ OPS_EMAILS: 'pager@capsul.org,oops' }, /^OPS_EMAILS must be a comma-separated list of email addresses; "oops" is not one$/],
    [{ ALERT_HOST_OFFLINE_MINUTES: '0' }, /^ALERT_HOST_OFFLINE_MINUTES must be a whole number from 1 to 10080, not "0"$/],
    [{ ALERT_WAITING_MINUTES: '1.5' }, /^ALERT_WAITING_MINUTES must be a whole number from 1 to 10080/],
    [{ ALERT_WEBHOOK_FAILURES: 'many' }, /^ALERT_WEBHOOK_FAILURES must be a whole number from 1 to 10000/],
    [{ ALERT_JOB_FAILURES: '-3' }, /^ALERT_JOB_FAILURES must be a whole number from 1 to 10000/],
    [{ BASE_URL: 'https://capsul.org' }, /SECRET_KEY is required when BASE_URL is https/],
    [{ SECRET_KEY: 'short' }, /SECRET_KEY must be at least 32 characters/],
    [{ ADMIN_EMAILS: 'boss@capsul.org, not-an-email' }, /ADMIN_EMAILS .* "not-an-email" is not one/],
    [{ MAIL_SERVER: 'smtp.x.org', MAIL_USE_TLS: 'yes' }, /MAIL_USE_TLS must be starttls, tls or none/],
    [{ MAIL_SERVER: 'smtp.x.org', MAIL_PORT: '99999' }, /MAIL_PORT must be a number from 1 to 65535/],
    [{ TRUST_PROXY: 'everyone; rm -rf' }, /TRUST_PROXY must be/],
    [{ PORT: 'http' }, /PORT must be a number/],
    [{ PROVIDER_START_DATE: '1900-13-01' }, /^PROVIDER_START_DATE must be a date like 2020-05-01/],
    [{ PROVIDER_NAME: 'x'.repeat(101) }, /^PROVIDER_NAME and each line of PROVIDER_ADDRESS must be one line/],
    [{ PROVIDER_ADDRESS: 'Street|City\u0007' }, /^PROVIDER_NAME and each line of PROVIDER_ADDRESS must be one line/],
    [{ PROVIDER_ADDRESS: '1|2|3|4|5|6|7' }, /^PROVIDER_ADDRESS has at most 6 lines/],
    [{ LOG_LEVEL: 'verbose' }, /^LOG_LEVEL must be one of fatal, error, warn, info, debug, trace, silent, not "verbose"$/],
    [{ METRICS_TOKEN: 'short-token' }, /^METRICS_TOKEN must be at least 16 characters without spaces/],
    [{ METRICS_TOKEN: 'a token with spaces in it' }, /^METRICS_TOKEN must be at least 16 characters without spaces/],
    [{ LOG_REQUESTS: 'loud' }, /^LOG_REQUESTS must be one of fatal, error, warn, info, debug, trace, silent, not "loud"$/],
    [{ LOG_FORMAT: 'xml' }, /^LOG_FORMAT must be pretty or json, not "xml"$/],
    [{ DATABASE_URL: 'mysql://x/y' }, /^DATABASE_URL must be a URL starting with postgres:\/\//],
    [{ DATABASE_URL: 'postgres://h/db', DATABASE_APP_URL: 'nope' }, /^DATABASE_APP_URL must be a URL/],
    [{ DATABASE_APP_URL: 'postgres://capsul_app@h/db' }, /set DATABASE_URL too/],
    [{ AUDIT_LOG_NAME: 'has space' }, /^AUDIT_LOG_NAME must be a name without spaces/],
    [{ AUDIT_LOG_NAME: 'a+b' }, /^AUDIT_LOG_NAME must be a name without spaces or "\+"/],
    [{ AUDIT_VERIFIER_KEY: 'not-a-key' }, /^AUDIT_VERIFIER_KEY must be a verifier key/],
    [{ AUDIT_CHECKPOINT_SECONDS: '-1' }, /^AUDIT_CHECKPOINT_SECONDS must be a whole number/],
  ];
  for (const [env, message] of refusals) {
    it(`refuses ${JSON.stringify(env)} with one line naming the variable`, () => {
      assert.throws(
        () => readConfig(env),
        (error: unknown) => error instanceof ConfigError && message.test(error.message),
      );
    });
  }
});
