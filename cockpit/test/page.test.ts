// vfioctl's Cockpit page in a real browser: Debian's cockpit-ws + cockpit-bridge serve the built
// page, the bridge spawns vfioctl (the real CLI, with the kernel model behind its writes) on a
// fixture host, and Debian's Chromium clicks through it. Every expectation is read from
// `vfioctl ... --json` on the same host or from the fixture tree itself.
import { after, test } from 'node:test';
import * as assert from 'node:assert/strict';
import type { Page } from 'playwright-core';
import { closeBrowser, openSession, settled, shot, SHOTS, type Session } from './harness';
import { E1, E2, LPC, VN } from '../../test/support/model-host';
import { HostRoot } from '../../src/host/root';
import { writeBootState } from '../../src/persist/state';

after(closeBrowser);

async function withSession(
  opts: Parameters<typeof openSession>[0],
  fn: (s: Session) => Promise<void>,
): Promise<void> {
  const s = await openSession(opts);
  try {
    await fn(s);
  } finally {
    await s.close();
  }
}

const rowAddresses = (page: Page) =>
  page.$$eval('#vf-device-table tbody tr[data-address]', (rows) =>
    rows.map((r) => r.getAttribute('data-address')),
  );
const cellText = (page: Page, address: string, col: string) =>
  page
    .textContent(`#vf-device-table tr[data-address="${address}"] td[data-col="${col}"]`)
    .then((t) => (t ?? '').trim());

/**
 * On a device's detail: the action's preview, then its confirmation; leaves the result dialog open.
 */
async function runAction(page: Page, action: string): Promise<void> {
  await page.click(`button[data-action="${action}"]`);
  await page.waitForSelector('#vf-dialog [data-dialog="confirm"]');
  await settled(page);
  await page.click('#vf-dialog [data-dialog="confirm"]');
  await page.waitForSelector('#vf-dialog [data-dialog="close"]');
  await settled(page);
}

async function openDetail(page: Page, address: string): Promise<void> {
  await page.click(`#vf-device-table tr[data-address="${address}"] button.vf-link`);
  await page.waitForSelector('#vf-detail-title');
  await settled(page);
}

test('the device table matches `list --json` row for row, and sorts', async () => {
  await withSession(
    { nvme: 2, eth0: { name: 'eth0', up: true, ipv4: '192.0.2.0' } },
    async ({ host, page }) => {
      await settled(page);
      const list = (await host.run(['list', '--json'])).json<
        {
          address: string;
          driver: string | null;
          vfio: { driver: string } | null;
          iommuGroup: string | null;
          inUse: string[];
        }[]
      >();
      assert.equal(list.length, 6);
      assert.deepEqual(await rowAddresses(page), list.map((d) => d.address).sort());
      for (const d of list) {
        assert.equal(await cellText(page, d.address, 'driver'), d.driver ?? '(none)');
        assert.equal(await cellText(page, d.address, 'vfio'), d.vfio?.driver ?? 'none');
        assert.equal(await cellText(page, d.address, 'inuse'), d.inUse.join(''));
        const group = await page.textContent(
          `#vf-device-table tr[data-address="${d.address}"] td[data-label="IOMMU group"]`,
        );
        assert.match(group ?? '', new RegExp(`^${d.iommuGroup ?? '-'}\\b`));
      }
      assert.ok(
        list.find((d) => d.address === E1)!.inUse.length > 0,
        'the fixture has an in-use device',
      );
      assert.match((await page.textContent('#vf-count')) ?? '', /^6 of 6 devices$/);
      await shot(page, 'list-1280x800');
      // Sorting: the header buttons flip the order and say so to assistive technology.
      await page.click('button[data-sort="address"]');
      assert.deepEqual(
        await rowAddresses(page),
        list
          .map((d) => d.address)
          .sort()
          .reverse(),
      );
      assert.equal(
        await page.getAttribute('th:has(button[data-sort="address"])', 'aria-sort'),
        'descending',
      );
      await page.click('button[data-sort="driver"]');
      const drivers = await page.$$eval('#vf-device-table tbody td[data-col="driver"]', (tds) =>
        tds.map((t) => (t.textContent ?? '').trim()),
      );
      assert.deepEqual(drivers, [...drivers].sort());
    },
  );
});

test('filters by text, class, driver and "on VFIO", from the keyboard', async () => {
  await withSession({}, async ({ host, page }) => {
    await settled(page);
    await page.focus('#vf-filter-text');
    await page.keyboard.type('e1000e');
    assert.deepEqual(await rowAddresses(page), [E1, E2]);
    assert.match((await page.textContent('#vf-count')) ?? '', /^2 of 5 devices$/);
    await page.fill('#vf-filter-text', '');
    await page.selectOption('#vf-filter-class', 'Bridge');
    assert.deepEqual(await rowAddresses(page), [LPC]);
    await page.selectOption('#vf-filter-class', '');
    await page.selectOption('#vf-filter-driver', 'virtio-pci');
    assert.deepEqual(await rowAddresses(page), [VN]);
    await page.selectOption('#vf-filter-driver', '');
    // The checkbox by keyboard: Tab from the driver select, Space.
    await page.focus('#vf-filter-driver');
    await page.keyboard.press('Tab');
    await page.keyboard.press('Space');
    assert.equal(await page.isChecked('#vf-filter-vfio'), true);
    assert.deepEqual(await rowAddresses(page), []);
    assert.match(
      (await page.textContent('#vf-device-table tbody')) ?? '',
      /No device matches the filter/,
    );
    // Bound outside the page, then reloaded: the filter shows exactly the devices list calls
    // onVfio.
    await host.run(['bind', VN]);
    await page.reload();
    await settled(page);
    await page.check('#vf-filter-vfio');
    const onVfio = (await host.run(['list', '--json']))
      .json<{ address: string; onVfio: boolean }[]>()
      .filter((d) => d.onVfio)
      .map((d) => d.address);
    assert.deepEqual(await rowAddresses(page), onVfio);
    assert.deepEqual(onVfio, [VN]);
  });
});

test("a device's detail shows the candidates of `show --json`, its group and its rule", async () => {
  await withSession({}, async ({ host, page }) => {
    await settled(page);
    // Keyboard: focus the address button and press Enter.
    await page.focus(`#vf-device-table tr[data-address="${VN}"] button.vf-link`);
    await page.keyboard.press('Enter');
    await page.waitForSelector('#vf-candidates');
    await settled(page);
    const shown = (await host.run(['show', VN, '--json'])).json<{
      candidates: { driver: string; usable: boolean; reason: string | null; notes: string[] }[];
      iommuGroup: string;
    }>();
    assert.ok(shown.candidates.length >= 2);
    const rows = await page.$$eval('#vf-candidates tbody tr', (trs) =>
      trs.map((tr) => ({
        driver: tr.getAttribute('data-driver'),
        usable: tr.querySelector('[data-col="usable"]')!.textContent!.trim(),
        why: tr.querySelector('[data-col="why"]')!.textContent!.trim(),
      })),
    );
    assert.deepEqual(
      rows,
      shown.candidates.map((c) => ({
        driver: c.driver,
        usable: c.usable ? 'usable' : 'not usable',
        why: [c.reason, ...c.notes].filter(Boolean).join('; ') || '-',
      })),
    );
    assert.deepEqual(
      await page.$$eval('#vf-group li', (lis) => lis.map((l) => l.getAttribute('data-address'))),
      [VN],
    );
    assert.match((await page.textContent('#vf-rule')) ?? '', /No rule names this device/);
    // A device with an unusable candidate: LPC is a bridge-class function, still header type 0,
    // so show it for a device whose group has other members instead.
    await page.click('#vf-back');
    await page.waitForSelector('#vf-device-table');
    await openDetail(page, LPC);
    const lpc = (await host.run(['show', LPC, '--json'])).json<{ iommuGroupPeers: string[] }>();
    assert.deepEqual(
      await page.$$eval('#vf-group li', (lis) => lis.map((l) => l.getAttribute('data-address'))),
      [LPC, ...lpc.iommuGroupPeers],
    );
    await shot(page, 'detail-1280x800');
  });
});

test('a dry-run bind of an in-use device shows the in-use refusal and binds nothing; force needs a second confirmation', async () => {
  await withSession(
    { eth0: { name: 'eth0', up: true, ipv4: '192.0.2.0' } },
    async ({ host, page }) => {
      await settled(page);
      await openDetail(page, E1);
      await page.click('button[data-action="bind"]');
      await page.waitForSelector('#vf-dialog [data-refusal="in-use"]');
      await settled(page);
      const cli = (await host.run(['bind', E1, '--dry-run', '--json'])).json<{
        results: { refusals: { check: string; message: string }[] }[];
      }>();
      const refusal = cli.results[0]!.refusals.find((r) => r.check === 'in-use')!;
      assert.ok(
        (await page.textContent('#vf-dialog [data-refusal="in-use"]'))!.includes(refusal.message),
      );
      assert.equal(
        await page.$('#vf-dialog [data-dialog="confirm"]'),
        null,
        'no plain confirmation for a refused bind',
      );
      await shot(page, 'refusal-1280x800');
      // Forcing: a forced dry run first, then a confirmation that stays disabled until
      // acknowledged.
      await page.click('#vf-dialog [data-dialog="force"]');
      await page.waitForSelector('#vf-dialog [data-dialog="force-confirm"]');
      await settled(page);
      assert.equal(await page.isDisabled('#vf-dialog [data-dialog="force-confirm"]'), true);
      await page.check('#vf-dialog [data-dialog="force-ack"]');
      assert.equal(await page.isDisabled('#vf-dialog [data-dialog="force-confirm"]'), false);
      assert.ok(
        (await page.$$('#vf-dialog .vf-steps li')).length > 0,
        'the forced preview lists its steps',
      );
      // Escape closes the dialog and gives focus back to the button that opened it.
      await page.keyboard.press('Escape');
      assert.equal(await page.$('#vf-dialog'), null);
      assert.equal(
        await page.evaluate(() => document.activeElement?.getAttribute('data-action')),
        'bind',
      );
      assert.deepEqual(host.state(E1), { driver: 'e1000e', override: null, vfioDev: false });
    },
  );
});

test('a bind of a free device, previewed then confirmed, ends with the table showing its VFIO driver', async () => {
  await withSession({}, async ({ host, page }) => {
    await settled(page);
    await openDetail(page, VN);
    await page.click('button[data-action="bind"]');
    await page.waitForSelector('#vf-dialog [data-dialog="confirm"]');
    await settled(page);
    const plan = (await host.run(['bind', VN, '--dry-run', '--json'])).json<{
      results: { steps: { description: string }[]; target: string }[];
    }>();
    assert.deepEqual(
      await page.$$eval('#vf-dialog .vf-steps li', (lis) => lis.map((l) => l.textContent)),
      plan.results[0]!.steps.map((s) => s.description),
    );
    assert.equal(host.state(VN).driver, 'virtio-pci', 'the preview changed nothing');
    await page.click('#vf-dialog [data-dialog="confirm"]');
    await page.waitForSelector('#vf-dialog [data-dialog="close"]');
    await settled(page);
    assert.equal(await page.getAttribute(`#vf-dialog [data-result="${VN}"]`, 'data-status'), 'ok');
    await shot(page, 'bind-result-1280x800');
    // Keyboard: focus stays in the dialog while the page redraws under it, and comes back to the
    // page.
    assert.equal(
      await page.evaluate(() => document.activeElement?.getAttribute('data-dialog')),
      'close',
    );
    await page.keyboard.press('Enter');
    assert.equal(await page.$('#vf-dialog'), null);
    assert.equal(
      await page.evaluate(() => document.activeElement?.id),
      'vf-detail-title',
      'no bind button any more: focus goes to the heading',
    );
    await page.click('#vf-back');
    await page.waitForSelector('#vf-device-table');
    await settled(page);
    assert.equal(await cellText(page, VN, 'driver'), `${plan.results[0]!.target} VFIO`);
    assert.deepEqual(host.state(VN), {
      driver: 'virtio_vfio_pci',
      override: 'virtio_vfio_pci',
      vfioDev: true,
    });
  });
});

test('a bind into a non-viable IOMMU group offers --group, which moves the whole group', async () => {
  await withSession({}, async ({ host, page }) => {
    await settled(page);
    await openDetail(page, LPC);
    await page.click('button[data-action="bind"]');
    await page.waitForSelector('#vf-dialog [data-refusal="iommu-group"]');
    await page.click('#vf-dialog [data-dialog="group"]');
    await page.waitForSelector('#vf-dialog [data-dialog="confirm"]');
    await settled(page);
    const previewed = await page.$$eval('#vf-dialog [data-result]', (rs) =>
      rs.map((r) => r.getAttribute('data-result')),
    );
    const cli = (await host.run(['bind', LPC, '--group', '--dry-run', '--json'])).json<{
      results: { address: string }[];
    }>();
    assert.deepEqual(
      previewed,
      cli.results.map((r) => r.address),
    );
    assert.ok(previewed.length === 2);
    await page.click('#vf-dialog [data-dialog="confirm"]');
    await page.waitForSelector('#vf-dialog [data-dialog="close"]');
    for (const a of previewed) assert.equal(host.state(a!).vfioDev, true, a!);
  });
});

test('the doctor summary shows the FAIL and WARN lines of `doctor --json`', async () => {
  for (const iommu of [true, false]) {
    await withSession({ iommu }, async ({ host, page }) => {
      await settled(page);
      const doc = (await host.run(['doctor', '--json'])).json<{
        ok: boolean;
        checks: { id: string; status: string; message: string }[];
      }>();
      const shown = await page.$$eval('#vf-doctor ul[aria-label="Problems"] li', (lis) =>
        lis.map((l) => ({
          id: l.getAttribute('data-check'),
          status: l.getAttribute('data-status'),
          text: l.textContent,
        })),
      );
      const problems = doc.checks.filter((c) => c.status !== 'ok');
      assert.deepEqual(
        shown.map((s) => [s.id, s.status]),
        problems.map((c) => [c.id, c.status]),
      );
      for (const [i, c] of problems.entries())
        assert.ok(shown[i]!.text!.includes(c.message), c.message);
      assert.match(
        (await page.textContent('#vf-doctor .pf-c-alert__title')) ?? '',
        doc.ok ? /can use VFIO/ : /cannot use VFIO yet/,
      );
      assert.equal(doc.ok, iommu);
      if (!iommu) assert.ok(problems.some((c) => c.status === 'fail' && c.id === 'iommu'));
    });
  }
});

test('"make persistent" saves a rule through set; the page follows state.json when something else applies', async () => {
  await withSession({}, async ({ host, page }) => {
    await settled(page);
    await openDetail(page, VN);
    await runAction(page, 'set');
    await page.click('#vf-dialog [data-dialog="close"]');
    assert.match((await page.textContent('#vf-rule')) ?? '', /vfio/);
    assert.equal(host.state(VN).driver, 'virtio_vfio_pci');
    await page.click('#vf-back');
    await page.waitForSelector(`#vf-status tr[data-address="${VN}"][data-drift="ok"]`);
    // Another vfioctl (not the page) configures E2: state.json changes and the page refreshes by
    // itself.
    const r = await host.run(['set', E2, 'vfio']);
    assert.equal(r.code, 0, r.stderr);
    await page.waitForSelector(`#vf-status tr[data-address="${E2}"]`, { timeout: 20_000 });
    const st = (await host.run(['status', '--json'])).json<{
      devices: { address: string; drift: string }[];
    }>();
    assert.deepEqual(
      await page.$$eval('#vf-status tbody tr', (trs) =>
        trs.map((t) => [t.getAttribute('data-address'), t.getAttribute('data-drift')]),
      ),
      st.devices.map((d) => [d.address, d.drift]),
    );
    // "Remove rule" (unset): previewed, confirmed; the rule goes and the device returns to its host
    // driver.
    await page.click(`#vf-status tr[data-address="${VN}"] button.vf-link`);
    await page.waitForSelector('button[data-action="unset"]');
    await settled(page);
    await runAction(page, 'unset');
    assert.equal(await page.getAttribute(`#vf-dialog [data-result="${VN}"]`, 'data-status'), 'ok');
    await page.click('#vf-dialog [data-dialog="close"]');
    assert.match((await page.textContent('#vf-rule')) ?? '', /No rule names this device/);
    assert.equal(host.state(VN).driver, 'virtio-pci');
    assert.deepEqual(
      (await host.run(['status', '--json']))
        .json<{ devices: { address: string }[] }>()
        .devices.map((d) => d.address),
      [E2],
    );
  });
});

test('unbind gives a device bound outside the page back to its host driver', async () => {
  await withSession({}, async ({ host, page }) => {
    assert.equal((await host.run(['bind', E2])).code, 0);
    await page.reload();
    await settled(page);
    assert.equal(await cellText(page, E2, 'driver'), 'vfio-pci VFIO');
    await openDetail(page, E2);
    const plan = (await host.run(['unbind', E2, '--dry-run', '--json'])).json<{
      results: { steps: { description: string }[] }[];
    }>();
    await page.click('button[data-action="unbind"]');
    await page.waitForSelector('#vf-dialog [data-dialog="confirm"]');
    await settled(page);
    assert.deepEqual(
      await page.$$eval('#vf-dialog .vf-steps li', (lis) => lis.map((l) => l.textContent)),
      plan.results[0]!.steps.map((s) => s.description),
    );
    await page.click('#vf-dialog [data-dialog="confirm"]');
    await page.waitForSelector('#vf-dialog [data-dialog="close"]');
    await settled(page);
    assert.deepEqual(host.state(E2), { driver: 'e1000e', override: null, vfioDev: false });
  });
});

test('readable in a narrow window: no horizontal scrolling, the table stacks', async () => {
  await withSession(
    { viewport: { width: 400, height: 800 }, eth0: { name: 'eth0', up: true, ipv4: '192.0.2.0' } },
    async ({ page }) => {
      await settled(page);
      assert.equal(
        await page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth),
        true,
      );
      // pf-m-grid-md: below 768 px each row is a block with its labels.
      const display = await page.$eval(
        '#vf-device-table thead',
        (t) => getComputedStyle(t).display,
      );
      assert.equal(display, 'none');
      await shot(page, 'list-narrow-400');
      await openDetail(page, E1);
      assert.equal(
        await page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth),
        true,
      );
      await page.click('button[data-action="bind"]');
      await page.waitForSelector('#vf-dialog [data-refusal="in-use"]');
      await settled(page);
      await shot(page, 'refusal-narrow-400');
    },
  );
});

test("Cockpit's shell lists the page in its menu and shows it in its frame", async () => {
  await withSession(
    { eth0: { name: 'eth0', up: true, ipv4: '192.0.2.0' } },
    async ({ page, url }) => {
      await page.goto(new URL('/', url).href);
      const entry = page.locator('nav a', { hasText: 'VFIO devices' });
      await entry.waitFor();
      await entry.click();
      const frame = page.frameLocator('iframe[name="cockpit1:localhost/vfioctl"]');
      await frame.locator('#vf-device-table').waitFor();
      await frame.locator('body[data-busy="false"]').waitFor();
      assert.equal(await frame.locator('#vf-device-table tbody tr[data-address]').count(), 5);
      await page.screenshot({ path: `${SHOTS}/shell-1280x800.png` });
    },
  );
});

test('the page follows /run/vfioctl/boot.json: the boot outcome appears when the boot records it', async () => {
  await withSession({}, async ({ host, page }) => {
    assert.equal((await host.run(['set', VN, 'vfio'])).code, 0);
    await page.reload();
    await page.waitForSelector(`#vf-status tr[data-address="${VN}"]`);
    await settled(page);
    const bootCell = () =>
      page.textContent(`#vf-status tr[data-address="${VN}"] td[data-label="Boot"]`);
    assert.equal(await bootCell(), '-');
    // What the late unit (apply --boot) records, written with vfioctl's own writer.
    writeBootState(new HostRoot(host.f.dir), {
      at: new Date().toISOString(),
      kernel: '6.12.0-test',
      devices: { [VN]: { outcome: 'won', driver: 'virtio_vfio_pci', hostDriverBuiltin: false } },
    });
    const st = (await host.run(['status', '--json'])).json<{
      devices: { address: string; boot: { outcome: string; driver: string } | null }[];
    }>();
    assert.deepEqual(st.devices.find((d) => d.address === VN)!.boot, {
      outcome: 'won',
      driver: 'virtio_vfio_pci',
      hostDriverBuiltin: false,
    });
    await page.waitForFunction(
      (a) =>
        document.querySelector(`#vf-status tr[data-address="${a}"] td[data-label="Boot"]`)
          ?.textContent === 'won (virtio_vfio_pci)',
      VN,
      { timeout: 20_000 },
    );
    assert.match((await page.textContent('#vf-status')) ?? '', /boot recorded/);
    await shot(page, 'status-boot-1280x800');
  });
});

test("a device's hooks are listed, and progress shows while a slow bind runs", async () => {
  await withSession({}, async ({ host, page }) => {
    // A hooks.d hook that takes a while at pre-bind, so the run is long enough to watch.
    host.hook('/etc/vfioctl/hooks.d/10-slow', 'if [ "$1" = pre-bind ]; then sleep 2; fi\nexit 0');
    await settled(page);
    await openDetail(page, VN);
    const shown = (await host.run(['show', VN, '--json'])).json<{ hooks: { path: string }[] }>();
    assert.equal(shown.hooks.length, 1);
    assert.match(
      (await page.textContent('#vf-hooks')) ?? '',
      new RegExp(shown.hooks[0]!.path.replace(/[.]/g, '\\.')),
    );
    await page.click('button[data-action="bind"]');
    await page.waitForSelector('#vf-dialog [data-dialog="confirm"]');
    await settled(page);
    await page.click('#vf-dialog [data-dialog="confirm"]');
    const progress = page.locator('#vf-progress');
    await progress.waitFor({ state: 'visible' });
    assert.match((await progress.textContent()) ?? '', new RegExp(`vfioctl bind ${VN}`));
    await page.waitForSelector('#vf-dialog [data-dialog="close"]');
    await settled(page);
    assert.equal(await progress.isVisible(), false);
    assert.equal(host.state(VN).driver, 'virtio_vfio_pci');
  });
});
