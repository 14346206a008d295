// The configuration the integration tests give the Worker (inline processing, no queue).
export const TOKENS = ['tok-old', 'tok-new'];
export const API_KEYS = ['key-one', 'key-two'];
export const SECRET_STRINGS = [...TOKENS, ...API_KEYS];

export const inlineConfig = () => ({
  secrets: { RBM_CLIENT_TOKEN: TOKENS.join(','), API_KEYS: API_KEYS.join(',') },
  vars: { RBM_AGENT_ID: 'test_agent', STATUS_TTL_DAYS: '30', PROCESSING: 'inline' },
  kv: true,
});
