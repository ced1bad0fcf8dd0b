// A fake `devlink` for hook tests: records its arguments and answers like iproute2's devlink
// (-j JSON for `dev eswitch show` and `port show`; `port function set ... migratable`).
import * as fs from 'node:fs';
import * as path from 'node:path';

export interface DevlinkState {
  eswitch: Record<string, 'legacy' | 'switchdev'>;
  ports: Record<
    string,
    {
      flavour: string;
      pfnum: number;
      vfnum?: number;
      function?: { hw_addr: string; migratable?: boolean };
    }
  >;
}

const SCRIPT = `#!/usr/bin/env node
'use strict';
const fs = require('fs'), path = require('path');
const dir = __dirname, stateFile = path.join(dir, 'devlink.state.json');
fs.appendFileSync(path.join(dir, 'devlink.log'), JSON.stringify(process.argv.slice(2)) + '\\n');
const st = JSON.parse(fs.readFileSync(stateFile, 'utf8'));
const a = process.argv.slice(2).filter((x) => x !== '-j');
const out = (o) => process.stdout.write(JSON.stringify(o) + '\\n');
if (a[0] === 'dev' && a[1] === 'eswitch' && a[2] === 'show') {
  if (!(a[3] in st.eswitch)) { process.stderr.write('Error: devlink answers: No such device\\n'); process.exit(1); }
  out({ dev: { [a[3]]: { mode: st.eswitch[a[3]], 'inline-mode': 'none', 'encap-mode': 'basic' } } });
} else if (a[0] === 'port' && a[1] === 'show') {
  const port = {};
  for (const [k, v] of Object.entries(st.ports)) port[k] = { type: 'eth', ...v, external: false, splittable: false };
  out({ port });
} else if (a[0] === 'port' && a[1] === 'function' && a[2] === 'set' && a[4] === 'migratable') {
  const p = st.ports[a[3]];
  if (!p) { process.stderr.write('Error: devlink answers: No such device\\n'); process.exit(1); }
  p.function.migratable = a[5] === 'enable';
  fs.writeFileSync(stateFile, JSON.stringify(st));
} else { process.stderr.write('fake devlink: unsupported: ' + a.join(' ') + '\\n'); process.exit(1); }
`;

export class FakeDevlink {
  constructor(readonly dir: string) {}

  static install(dir: string, state: DevlinkState): FakeDevlink {
    fs.mkdirSync(dir, { recursive: true, mode: 0o755 });
    fs.writeFileSync(path.join(dir, 'devlink'), SCRIPT, { mode: 0o755 });
    fs.writeFileSync(path.join(dir, 'devlink.state.json'), JSON.stringify(state));
    return new FakeDevlink(dir);
  }

  calls(): string[][] {
    const log = path.join(this.dir, 'devlink.log');
    return fs.existsSync(log)
      ? fs
          .readFileSync(log, 'utf8')
          .trim()
          .split('\n')
          .map((l) => JSON.parse(l) as string[])
      : [];
  }

  state(): DevlinkState {
    return JSON.parse(
      fs.readFileSync(path.join(this.dir, 'devlink.state.json'), 'utf8'),
    ) as DevlinkState;
  }
}
