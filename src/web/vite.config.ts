// Vite's configuration for the web app: sources in ./app, the build in dist/web (served by
// src/api/web-routes.ts). `npm run dev:web` serves the app with hot reload and sends /api to a
// running Torus (TORUS_URL, default http://127.0.0.1:8080).
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vite';

export const WEB_APP_DIR = fileURLToPath(new URL('./app/', import.meta.url));
export const WEB_OUT_DIR = fileURLToPath(new URL('../../dist/web/', import.meta.url));

export default defineConfig({
  root: WEB_APP_DIR,
  base: '/',
  logLevel: 'warn',
  build: {
    outDir: WEB_OUT_DIR,
    emptyOutDir: true,
    target: 'es2022',
    // the app's CSP allows no inline script: no polyfill snippet in index.html
    modulePreload: { polyfill: false },
    sourcemap: false,
    reportCompressedSize: false,
    rollupOptions: {
      // TanStack Query marks its hooks "use client" for server-component bundlers; meaningless here
      onwarn(warning, warn) {
        if (warning.code !== 'MODULE_LEVEL_DIRECTIVE') warn(warning);
      },
    },
  },
  server: {
    proxy: { '/api': { target: process.env.TORUS_URL ?? 'http://127.0.0.1:8080', changeOrigin: false } },
  },
});
