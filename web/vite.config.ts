import { fileURLToPath } from 'node:url';
import react from '@vitejs/plugin-react';
import { defineConfig } from 'vite';

// The web pages (hosted checkout, customer portal, admin console), built into dist/web and served
// by the Reprise server itself (src/http/web.ts). `npm run web:dev` proxies the API to a running server.
export default defineConfig({
  root: fileURLToPath(new URL('.', import.meta.url)),
  base: '/',
  plugins: [react()],
  build: {
    outDir: fileURLToPath(new URL('../dist/web', import.meta.url)),
    emptyOutDir: true,
    assetsDir: 'assets',
    sourcemap: true,
    chunkSizeWarningLimit: 1500,
  },
  server: {
    proxy: { '/v1': process.env.REPRISE_URL ?? 'http://127.0.0.1:3000' },
  },
});
