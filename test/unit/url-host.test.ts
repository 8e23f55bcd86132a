import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { urlHost } from '../../wrapper/src/config/url-host.js';

test('a URL host comes out as a name or a bare address that net and tls take', () => {
  assert.equal(urlHost('https://id.example.test:8443/x'), 'id.example.test');
  assert.equal(urlHost('https://127.0.0.1:18443'), '127.0.0.1');
  assert.equal(urlHost('https://[::1]:18443'), '::1');
  assert.equal(net.isIP(urlHost(new URL('https://[fd00::10]/'))), 6);
});
