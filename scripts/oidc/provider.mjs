// A local OpenID Connect provider for development and tests. NOT for production.
//
// Built on oidc-provider (panva, OpenID-certified), pinned by package-lock.json beside this file:
//   npm ci --prefix scripts/oidc        # once, installs scripts/oidc/node_modules
//   node scripts/oidc/provider.mjs      # serves http://127.0.0.1:8090 until SIGINT/SIGTERM
//
// What it offers:
// - discovery at /.well-known/openid-configuration, keys at /jwks;
// - access tokens as JWTs (RFC 9068, `typ: at+jwt`) for one resource server, the catalog API:
//   aud `catalog-api`, scopes `catalog:write catalog:admin`;
// - client `catalog-dev` (confidential, client_secret_post) and the dev-only grant
//   `urn:catalog:params:oauth:grant-type:dev-subject`: a token for ANY subject, no login
//   (scripts/token.sh wraps it);
// - client `catalog-swagger` (public, authorization code + PKCE) for Swagger UI, with
//   oidc-provider's devInteractions: any login name and password are accepted.
//
// Environment (all optional):
//   OIDC_PORT (8090), OIDC_HOST (127.0.0.1), OIDC_ISSUER (http://127.0.0.1:$OIDC_PORT),
//   OIDC_KEY_FILE (<repo>/.local/oidc/signing-key.json), OIDC_KEY_ALG (ES256 | RS256, used only
//   when the key file is first created), OIDC_AUDIENCE (catalog-api),
//   OIDC_RESOURCE (urn:catalog-api, the resource indicator, must be an absolute URI),
//   OIDC_SCOPES ("catalog:write catalog:admin"), OIDC_ACCESS_TOKEN_TTL (3600 seconds),
//   OIDC_DEV_CLIENT_SECRET (catalog-dev-secret),
//   OIDC_SWAGGER_REDIRECT_URIS (space-separated; default the 127.0.0.1:8080 and localhost:8080
//   /docs/oauth-receiver.html), OIDC_COOKIE_KEYS (comma-separated; default random per start),
//   OIDC_PID_FILE (<repo>/.local/oidc/provider.pid).
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

import Provider, { errors } from 'oidc-provider';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '..', '..');
const env = (name, fallback) => {
  const value = process.env[name];
  return value === undefined || value === '' ? fallback : value;
};

const port = Number.parseInt(env('OIDC_PORT', '8090'), 10);
const host = env('OIDC_HOST', '127.0.0.1');
const issuer = env('OIDC_ISSUER', `http://127.0.0.1:${port}`);
const keyFile = path.resolve(env('OIDC_KEY_FILE', path.join(root, '.local', 'oidc', 'signing-key.json')));
const pidFile = path.resolve(env('OIDC_PID_FILE', path.join(root, '.local', 'oidc', 'provider.pid')));
const audience = env('OIDC_AUDIENCE', 'catalog-api');
const resource = env('OIDC_RESOURCE', 'urn:catalog-api');
const resourceScope = env('OIDC_SCOPES', 'catalog:write catalog:admin');
const accessTokenTTL = Number.parseInt(env('OIDC_ACCESS_TOKEN_TTL', '3600'), 10);
const devClientSecret = env('OIDC_DEV_CLIENT_SECRET', 'catalog-dev-secret');
const swaggerRedirectUris = env(
  'OIDC_SWAGGER_REDIRECT_URIS',
  'http://127.0.0.1:8080/docs/oauth-receiver.html http://localhost:8080/docs/oauth-receiver.html',
).split(/\s+/).filter(Boolean);
const cookieKeys = env('OIDC_COOKIE_KEYS', crypto.randomBytes(32).toString('base64url')).split(',');

export const DEV_GRANT = 'urn:catalog:params:oauth:grant-type:dev-subject';
const DEV_CLIENT = 'catalog-dev';
const SWAGGER_CLIENT = 'catalog-swagger';

function fail(message) {
  console.error(`oidc: ${message}`);
  process.exit(1);
}

if (!Number.isInteger(port) || port <= 0 || port > 65535) fail(`OIDC_PORT is not a port: ${process.env.OIDC_PORT}`);
if (!Number.isInteger(accessTokenTTL) || accessTokenTTL <= 0) fail('OIDC_ACCESS_TOKEN_TTL must be a positive number of seconds');
if (!URL.canParse(resource)) fail(`OIDC_RESOURCE must be an absolute URI (RFC 8707), got ${resource}`);

// RFC 7638 thumbprint: a kid that stays the same as long as the key does.
function thumbprint(jwk) {
  const members = jwk.kty === 'EC'
    ? { crv: jwk.crv, kty: jwk.kty, x: jwk.x, y: jwk.y }
    : { e: jwk.e, kty: jwk.kty, n: jwk.n };
  return crypto.createHash('sha256').update(JSON.stringify(members)).digest('base64url');
}

// The signing key: made once, then read back on every start so tokens and cached JWKS stay valid
// across restarts.
function loadOrCreateSigningKey(file) {
  if (!fs.existsSync(file)) {
    const alg = env('OIDC_KEY_ALG', 'ES256');
    let pair;
    if (alg === 'ES256') {
      pair = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
    } else if (alg === 'RS256') {
      pair = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
    } else {
      fail(`OIDC_KEY_ALG must be ES256 or RS256, got ${alg}`);
    }
    const jwk = pair.privateKey.export({ format: 'jwk' });
    const key = { ...jwk, kid: thumbprint(jwk), alg, use: 'sig' };
    fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
    const tmp = `${file}.${process.pid}.tmp`;
    fs.writeFileSync(tmp, `${JSON.stringify(key, null, 2)}\n`, { mode: 0o600, flag: 'wx' });
    try {
      // link, not rename: of two first starts at once, the second keeps the first one's key.
      fs.linkSync(tmp, file);
      console.error(`oidc: created signing key ${key.kid} (${alg}) in ${file}`);
    } catch (error) {
      if (error.code !== 'EEXIST') throw error;
    } finally {
      fs.unlinkSync(tmp);
    }
  }
  let key;
  try {
    key = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (error) {
    fail(`cannot read the signing key ${file}: ${error.message}`);
  }
  if (!key.d) fail(`${file} holds no private key (no "d")`);
  if (!key.alg) key.alg = key.kty === 'EC' ? 'ES256' : 'RS256';
  if (!['ES256', 'RS256'].includes(key.alg)) fail(`${file}: alg must be ES256 or RS256, got ${key.alg}`);
  key.use ??= 'sig';
  key.kid ??= thumbprint(key);
  return key;
}

const signingKey = loadOrCreateSigningKey(keyFile);
const alg = signingKey.alg;

const resourceServerInfo = {
  scope: resourceScope,
  audience,
  accessTokenTTL,
  accessTokenFormat: 'jwt',
  jwt: { sign: { alg } },
};

function resourceServerFor(indicator) {
  // `resource` (RFC 8707) must be an absolute URI: `urn:catalog-api` by default. The audience
  // itself is accepted too when it is one.
  if (!URL.canParse(indicator)) throw new errors.InvalidTarget('resource indicator must be an absolute URI');
  if (indicator === resource || indicator === audience) return resourceServerInfo;
  throw new errors.InvalidTarget(`unknown resource indicator; this provider serves only ${resource}`);
}

const configuration = {
  clients: [
    {
      client_id: DEV_CLIENT,
      client_secret: devClientSecret,
      client_name: 'catalog dev tokens (any subject, no login)',
      grant_types: [DEV_GRANT],
      response_types: [],
      redirect_uris: [],
      token_endpoint_auth_method: 'client_secret_post',
    },
    {
      client_id: SWAGGER_CLIENT,
      client_name: 'catalog API Swagger UI',
      application_type: 'web',
      token_endpoint_auth_method: 'none',
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      redirect_uris: swaggerRedirectUris,
    },
  ],
  jwks: { keys: [signingKey] },
  // Authorization code only (no implicit, no hybrid).
  responseTypes: ['code'],
  cookies: { keys: cookieKeys },
  clientDefaults: {
    id_token_signed_response_alg: alg,
  },
  // Any account exists: the subject is whatever was typed at the dev login or asked for.
  async findAccount(ctx, sub) {
    return { accountId: sub, async claims() { return { sub }; } };
  },
  features: {
    devInteractions: { enabled: true },
    resourceIndicators: {
      enabled: true,
      // Authorization requests (Swagger UI) that name no resource still get a catalog token.
      async defaultResource(ctx, client, oneOf) {
        return oneOf ?? resource;
      },
      async getResourceServerInfo(ctx, indicator, client) {
        return resourceServerFor(indicator);
      },
      // With `openid` in scope the provider would otherwise issue an opaque token for userinfo
      // when the token request names no resource.
      async useGrantedResource() {
        return true;
      },
    },
  },
  pkce: {
    required: () => true,
  },
  clientBasedCORS(ctx, origin, client) {
    // Swagger UI calls the token endpoint from the API's origin.
    return client.clientId === SWAGGER_CLIENT
      && client.redirectUris.some((uri) => URL.parse(uri)?.origin === origin);
  },
  ttl: {
    AccessToken: accessTokenTTL,
    AuthorizationCode: 60,
    IdToken: 3600,
    RefreshToken: 24 * 3600,
    Interaction: 3600,
    Session: 24 * 3600,
    Grant: 24 * 3600,
  },
};

const provider = new Provider(issuer, configuration);

// The dev grant: POST /token grant_type=DEV_GRANT&subject=alice&scope=catalog:write
// [&resource=urn:catalog-api][&expires_in=60], authenticated as catalog-dev.
provider.registerGrantType(DEV_GRANT, async (ctx) => {
  const { client, params } = ctx.oidc;
  if (client.clientId !== DEV_CLIENT) {
    throw new errors.UnauthorizedClient('only catalog-dev may use the dev-subject grant');
  }
  const subject = params.subject;
  if (!subject) throw new errors.InvalidRequest("missing required parameter 'subject'");
  if (subject.length > 255) throw new errors.InvalidRequest('subject is longer than 255 characters');

  const indicator = params.resource || resource;
  const server = new provider.ResourceServer(indicator, resourceServerFor(indicator));

  const requested = (params.scope || 'catalog:write').split(' ').filter(Boolean);
  const unknown = requested.filter((scope) => !server.scopes.has(scope));
  if (unknown.length) {
    throw new errors.InvalidScope(`scope not offered by ${indicator}: ${unknown.join(' ')}`, unknown.join(' '));
  }

  let expiresIn;
  if (params.expires_in !== undefined) {
    expiresIn = Number(params.expires_in);
    if (!Number.isSafeInteger(expiresIn) || expiresIn <= 0) {
      throw new errors.InvalidRequest('expires_in must be a positive integer (seconds)');
    }
  }

  const token = new provider.AccessToken({
    accountId: subject,
    client,
    gty: 'dev_subject',
    scope: [...new Set(requested)].join(' '),
    ...(expiresIn ? { expiresIn } : {}),
  });
  token.resourceServer = server;
  ctx.oidc.entity('AccessToken', token);
  const value = await token.save();

  ctx.body = {
    access_token: value,
    token_type: token.tokenType,
    expires_in: token.expiration,
    scope: token.scope,
    issued_token_type: 'urn:ietf:params:oauth:token-type:access_token',
  };
}, ['subject', 'scope', 'resource', 'expires_in']);

provider.on('server_error', (ctx, error) => console.error('oidc: server_error', error));
provider.on('grant.error', (ctx, error) => console.error(`oidc: grant error: ${error.message} (${error.error_description ?? ''})`));

const server = provider.listen(port, host);
server.on('error', (error) => {
  if (error.code === 'EADDRINUSE') fail(`${host}:${port} is in use (another provider running? OIDC_PORT picks another port)`);
  fail(error.message);
});
server.on('listening', () => {
  fs.mkdirSync(path.dirname(pidFile), { recursive: true });
  fs.writeFileSync(pidFile, `${process.pid}\n`);
  console.error(`oidc: issuer ${issuer} listening on http://${host}:${port} (key ${signingKey.kid}, ${alg}; audience ${audience}; resource ${resource})`);
});

function stop(signal) {
  console.error(`oidc: ${signal}, stopping`);
  try {
    if (fs.readFileSync(pidFile, 'utf8').trim() === String(process.pid)) fs.unlinkSync(pidFile);
  } catch {}
  server.close(() => process.exit(0));
  server.closeAllConnections?.();
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on('SIGINT', () => stop('SIGINT'));
process.on('SIGTERM', () => stop('SIGTERM'));
