#!/usr/bin/env node
// The `reprise` command. Build first (`npm run build`, or `npm start` does it).
import '../dist/cli/main.js';
