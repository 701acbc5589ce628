#!/usr/bin/env python3
"""Boot the product on an emulated arm64 board and check it from inside.

Installs the aarch64 binaries, the systemd/ and D-Bus files and the tiny model
bundle into the guest tree made by build-image.sh, packs it as an ext4 disk
(no mount needed), boots it under qemu-system-aarch64 (virt, Cortex-A76,
2 cores, TCG), lets tests/qemu/guest/systest.sh run its checks as a systemd
unit, reads the results disk back with debugfs and checks the PNG it made.
Exits non-zero on any failure and prints the guest journal for the failing
unit. With the UI: a virtio-gpu display and a virtio tablet; over QMP the host
compares the screen with the golden compose screen, taps keys on the tablet,
and checks the viewer of the image those taps made. Needs Pillow (./setup.sh --tests).

Usage: tests/qemu/systest.py --bin DIR [--image DIR] [--work DIR] [--timeout S]
"""

import argparse
import json
import os
import socket
import shutil
import subprocess
import sys
import time
import zlib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PROMPT = "a lighthouse on an arm64 board"


def run(*cmd, **kw):
    return subprocess.run(cmd, check=True, **kw)


def install(src: Path, dest: Path, mode: int = 0o644):
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dest)
    os.chmod(dest, mode)


def stage_rootfs(image: Path, bins: Path, root: Path):
    """The guest tree: Debian minbase plus the product, laid out as the Yocto
    recipe installs it."""
    root.mkdir(parents=True)
    run("tar", "--numeric-owner", "-xpf", str(image / "rootfs.tar"), "-C", str(root))
    for name in ("pocket-studiod", "pocket-studio"):
        install(bins / name, root / "usr/bin" / name, 0o755)
    sd = REPO / "systemd"
    install(sd / "pocket-studio.service", root / "usr/lib/systemd/system/pocket-studio.service")
    install(sd / "org.pocketstudio.Studio1.conf", root / "usr/share/dbus-1/system.d/org.pocketstudio.Studio1.conf")
    install(sd / "org.pocketstudio.Studio1.service",
            root / "usr/share/dbus-1/system-services/org.pocketstudio.Studio1.service")
    install(sd / "pocket-studio.sysusers", root / "usr/lib/sysusers.d/pocket-studio.conf")
    install(sd / "pocket-studio.tmpfiles", root / "usr/lib/tmpfiles.d/pocket-studio.conf")
    install(sd / "pocket-studio.modules-load", root / "usr/lib/modules-load.d/pocket-studio.conf")
    doc = root / "usr/share/doc/pocket-studio"
    for name in ("LICENSE-MIT", "LICENSE-APACHE", "README.md"):
        install(REPO / name, doc / name)
    install(sd / "config.example.toml", doc / "config.example.toml")
    for text in sorted((REPO / "third-party").iterdir()):
        install(text, doc / "third-party" / text.name)
    # The guest has no upscaler: with floating point emulated, a 4K upscale
    # would take hours, so images stay at the bundle's native size.
    etc = root / "etc/pocket-studio"
    etc.mkdir(parents=True, exist_ok=True)
    (etc / "config.toml").write_text('output = "native"\n')
    models = root / "usr/share/pocket-studio/models/default"
    shutil.copytree(REPO / "models/tiny-sd", models)
    wants = root / "etc/systemd/system/multi-user.target.wants"
    wants.mkdir(parents=True, exist_ok=True)
    (wants / "pocket-studio.service").symlink_to("/usr/lib/systemd/system/pocket-studio.service")

    guest = REPO / "tests/qemu/guest"
    install(guest / "systest.sh", root / "usr/local/lib/pocket-studio-systest/systest.sh", 0o755)
    install(guest / "pocket-studio-systest.service", root / "etc/systemd/system/pocket-studio-systest.service")
    install(guest / "systest.sysusers", root / "usr/lib/sysusers.d/zz-pocket-studio-systest.conf")
    (wants / "pocket-studio-systest.service").symlink_to("/etc/systemd/system/pocket-studio-systest.service")


def make_ext4(path: Path, label: str, size_mb: int, tree: Path | None = None):
    cmd = ["mke2fs", "-q", "-F", "-t", "ext4", "-L", label]
    if tree is not None:
        cmd += ["-d", str(tree)]
    run(*cmd, str(path), f"{size_mb}M")


def tree_mb(tree: Path) -> int:
    out = subprocess.run(["du", "-sm", str(tree)], check=True, capture_output=True, text=True)
    return int(out.stdout.split()[0])


GOLDEN = REPO / "tests/golden"
SCREEN = (1280, 800)  # virtio-gpu's default mode; the UI uses the preferred mode
STATUS_LINE_PX = 56   # the status line (model, queue, free space) differs per machine
DANGER = (0xE0, 0x6C, 0x5F)  # ui/theme.rs: the viewer's Delete button
ACCENT = (0xE8, 0xA2, 0x5C)  # ui/theme.rs: Restyle once the viewfinder has a frame


class Qmp:
    """A minimal QMP client: commands in, their answers out, events skipped."""

    def __init__(self, path: Path):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(str(path))
        self.file = self.sock.makefile("rw")
        json.loads(self.file.readline())  # greeting
        self.cmd("qmp_capabilities")

    def cmd(self, name: str, **arguments):
        self.file.write(json.dumps({"execute": name, "arguments": arguments}) + "\n")
        self.file.flush()
        while True:
            msg = json.loads(self.file.readline())
            if "return" in msg:
                return msg["return"]
            if "error" in msg:
                raise RuntimeError(f"QMP {name}: {msg['error']}")

    def tap(self, x: float, y: float):
        scale = lambda v, size: round(v * 32767 / (size - 1))
        self.cmd("input-send-event", events=[
            {"type": "abs", "data": {"axis": "x", "value": scale(x, SCREEN[0])}},
            {"type": "abs", "data": {"axis": "y", "value": scale(y, SCREEN[1])}}])
        for down in (True, False):
            time.sleep(0.2)
            self.cmd("input-send-event", events=[{"type": "btn", "data": {"down": down, "button": "left"}}])
        time.sleep(1.0)

    def screendump(self, path: Path):
        self.cmd("screendump", filename=str(path), format="png")


def compare_below_status_line(shot: Path, golden: Path) -> str | None:
    """Why the screenshot differs from the golden (status line excepted)."""
    from PIL import Image, ImageChops
    a = Image.open(shot).convert("RGB")
    b = Image.open(golden).convert("RGB")
    if a.size != b.size:
        return f"screen is {a.size[0]}x{a.size[1]}, golden {b.size[0]}x{b.size[1]}"
    box = (0, STATUS_LINE_PX, a.size[0], a.size[1])
    diff = ImageChops.difference(a.crop(box), b.crop(box)).convert("L")
    off = sum(diff.point(lambda v: 255 if v > 4 else 0).histogram()[255:])
    pixels = (box[2] - box[0]) * (box[3] - box[1])
    return None if off * 500 <= pixels else f"{off} of {pixels} pixels differ from {golden.name} (see {shot})"


class UiDriver:
    """Reacts to the guest's console markers: checks the screen and taps."""

    def __init__(self, work: Path):
        self.work, self.qmp, self.stage = work, None, "wait"
        self.checks: list[tuple[str, str | None]] = []

    def poll(self, console: str):
        try:
            if self.stage == "wait" and "SYSTEST-UI-READY" in console:
                self.stage = "typed"
                self.qmp = Qmp(self.work / "qmp.sock")
                # The first frame may still be on its way: look a few times.
                shot = self.work / "screen-compose.png"
                golden = GOLDEN / f"compose-empty-{SCREEN[0]}x{SCREEN[1]}.png"
                for _ in range(15):
                    self.qmp.screendump(shot)
                    why = compare_below_status_line(shot, golden)
                    if why is None:
                        break
                    time.sleep(1)
                self.checks.append(("display-shows-ui", why))
                keys = json.loads((GOLDEN / f"compose-keys-{SCREEN[0]}x{SCREEN[1]}.json").read_text())
                for key in ("h", "i", "Go"):
                    self.qmp.tap(*keys[key])
                self.qmp.screendump(self.work / "screen-after-taps.png")
            elif self.stage == "typed" and "SYSTEST-UI-DONE" in console:
                self.stage = "done"
                from PIL import Image
                shot = self.work / "screen-viewer.png"
                self.qmp.screendump(shot)
                colours = Image.open(shot).convert("RGB").getcolors(SCREEN[0] * SCREEN[1]) or []
                danger = sum(count for count, colour in colours if colour == DANGER)
                self.checks.append(("touch-ui-viewer", None if danger > 2000 else
                                    f"no Delete button on screen ({danger} danger-coloured pixels; see {shot})"))
            elif self.stage == "done" and "SYSTEST-CAMERA-UI" in console:
                self.stage = "camera"
                from PIL import Image
                taps = json.loads((GOLDEN / f"camera-taps-{SCREEN[0]}x{SCREEN[1]}.json").read_text())
                for name in ("viewer-back", "gallery-new", "compose-camera"):
                    self.qmp.tap(*taps[name])
                # Restyle turns from "Waiting for camera" to the accent colour
                # once a frame arrived; tap it only then, and only once.
                x, y = taps["camera-restyle"]
                shot = self.work / "screen-camera.png"
                for _ in range(60):
                    self.qmp.screendump(shot)
                    if Image.open(shot).convert("RGB").getpixel((int(x) - 150, int(y))) == ACCENT:
                        self.qmp.tap(x, y)
                        break
                    time.sleep(2)
                else:
                    self.checks.append(("touch-ui-viewfinder", f"no camera frame in 120 s (see {shot})"))
        except (OSError, RuntimeError, ValueError, KeyError) as e:
            self.checks.append((f"ui-{self.stage}", f"host side failed: {e}"))
            self.stage = "over" if self.stage == "camera" else "done"


def boot(image: Path, rootfs: Path, results: Path, work: Path, timeout: float,
         ui: UiDriver) -> tuple[bool, float]:
    """Boot until the guest powers off; False if it had to be killed."""
    console = work / "console.log"
    cmd = [
        "qemu-system-aarch64", "-M", "virt", "-cpu", "cortex-a76", "-smp", "2", "-m", "2G",
        "-accel", "tcg,thread=multi", "-nodefaults", "-no-reboot",
        "-display", "none", "-serial", f"file:{console}",
        "-qmp", f"unix:{work / 'qmp.sock'},server=on,wait=off",
        "-kernel", str(image / "vmlinuz"), "-initrd", str(image / "initramfs.cpio.gz"),
        "-append", "console=ttyAMA0 panic=-1 loglevel=4 systemd.show_status=auto",
        "-drive", f"file={rootfs},format=raw,if=none,id=root,snapshot=on",
        "-device", "virtio-blk-pci,drive=root",
        "-drive", f"file={results},format=raw,if=none,id=results",
        "-device", "virtio-blk-pci,drive=results",
        "-device", "virtio-rng-pci",
        "-device", "virtio-gpu-pci", "-device", "virtio-tablet-pci",
    ]
    started = time.monotonic()
    qemu = subprocess.Popen(cmd)
    while qemu.poll() is None:
        if time.monotonic() - started > timeout:
            qemu.kill()
            qemu.wait()
            return False, time.monotonic() - started
        if console.exists():
            ui.poll(console.read_text(errors="replace"))
        time.sleep(0.5)
    return True, time.monotonic() - started


def png_text(path: Path) -> tuple[int, int, dict[str, str]]:
    """Width, height and text chunks (tEXt, zTXt, iTXt) of a PNG."""
    data = path.read_bytes()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError(f"{path.name} is not a PNG")
    pos, width, height, text = 8, 0, 0, {}
    while pos < len(data):
        length = int.from_bytes(data[pos:pos + 4], "big")
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        if zlib.crc32(kind + body) != int.from_bytes(data[pos + 8 + length:pos + 12 + length], "big"):
            raise ValueError(f"{path.name}: bad CRC in {kind!r}")
        if kind == b"IHDR":
            width, height = int.from_bytes(body[0:4], "big"), int.from_bytes(body[4:8], "big")
        elif kind == b"tEXt":
            key, _, value = body.partition(b"\0")
            text[key.decode("latin-1")] = value.decode("latin-1")
        elif kind == b"iTXt":
            key, _, rest = body.partition(b"\0")
            compressed, rest = rest[0], rest[2:]
            _lang, _, rest = rest.partition(b"\0")
            _translated, _, value = rest.partition(b"\0")
            text[key.decode("latin-1")] = (zlib.decompress(value) if compressed else value).decode()
        pos += 12 + length
    return width, height, text


def check_png(path: Path) -> str | None:
    """Why the generated PNG is wrong, or None."""
    if not path.is_file():
        return "no PNG came back"
    manifest = (REPO / "models/tiny-sd/pocket-studio.toml").read_text()
    width, height, text = png_text(path)
    expected = {"prompt": PROMPT, "seed": "7", "steps": "4", "model": "tiny-sd", "output": "native"}
    wrong = {k: text.get(k) for k, v in expected.items() if text.get(k) != v}
    if wrong:
        return f"metadata {wrong}, expected {expected}"
    if f'"{text.get("model_sha256", "?")}"' not in manifest:
        return f"model_sha256 {text.get('model_sha256')} is not the bundle's UNet"
    if (width, height) != (32, 32) or text.get("generated_size") != "32x32":
        return f"size {width}x{height} (generated {text.get('generated_size')}), expected 32x32"
    if "Steps: 4" not in text.get("parameters", "") or not text.get("Software", "").startswith("pocket-studio "):
        return f"parameters/Software chunks: {text.get('parameters')!r} {text.get('Software')!r}"
    return None


# vivid's 75 % colour bars, left to right (its webcam input is 320x180 first).
VIVID_BARS = [(191, 191, 191), (191, 191, 0), (0, 191, 191), (0, 191, 0),
              (191, 0, 191), (191, 0, 0), (0, 0, 191), (0, 0, 0)]


def check_camera(result: Path, source: Path) -> str | None:
    """The frame a source=camera job started from shows vivid's colour bars
    where the centre crop of the 320x180 capture puts them; the result's
    metadata names the camera and the strength."""
    from PIL import Image
    _, _, text = png_text(result)
    described = text.get("init_image", "")
    if not described.startswith("camera /dev/video") or "320x180" not in described:
        return f"init_image metadata is {described!r}"
    if text.get("strength") != "0.75":
        return f"strength metadata is {text.get('strength')!r}"
    frame = Image.open(source).convert("RGB")
    width, height = frame.size
    crop = 180 / width  # capture pixels per output pixel (square crop of 320x180)
    left = (320 - 180) / 2
    checked = 0
    for x in range(width):
        sx = left + (x + 0.5) * crop
        bar = int(sx // 40)
        if min(sx - bar * 40, (bar + 1) * 40 - sx) < 3 * crop:
            continue  # too close to a bar edge for the resampling filter
        for y in (height // 4, height // 2, 3 * height // 4):
            got = frame.getpixel((x, y))
            if max(abs(a - b) for a, b in zip(got, VIVID_BARS[bar])) > 16:
                return f"pixel ({x}, {y}) is {got}, vivid's bar {bar} is {VIVID_BARS[bar]}"
            checked += 1
    # At 32 px wide the crop shows four whole bars (cyan, green, magenta,
    # red), one column of each far enough from the edges, on three rows.
    return None if checked >= 12 else f"only {checked} pixels away from bar edges"


def check_provenance(image: Path, anchor: Path) -> str | None:
    """The board's image, read by c2pa-python on the host: trusted given the
    device's CA, a trainedAlgorithmicMedia creation, and the PNG's text
    says why it carries no watermark (too small)."""
    peer = [sys.executable, str(REPO / "tests/provenance/peer.py")]
    manifest = json.loads(run(*peer, "c2pa", str(image), "--trust", str(anchor),
                              capture_output=True, text=True).stdout)
    if manifest.get("state") != "Trusted":
        return f"c2pa-python: {manifest}"
    created = (manifest.get("actions") or [{}])[0].get("actions", [{}])[0]
    if not created.get("digitalSourceType", "").endswith("/trainedAlgorithmicMedia"):
        return f"created action {created}"
    _, _, text = png_text(image)
    if text.get("c2pa") != "signed" or not text.get("watermark", "").startswith("skipped: 32x32"):
        return f"PNG text c2pa={text.get('c2pa')!r} watermark={text.get('watermark')!r}"
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bin", type=Path, required=True,
                        help="folder with the aarch64 pocket-studiod and pocket-studio "
                             "(cross-test.sh builds them; env.sh's AARCH64_OUT)")
    parser.add_argument("--image", type=Path, default=REPO / "target/qemu/image")
    parser.add_argument("--work", type=Path, default=REPO / "target/qemu/run")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds before the guest is killed")
    args = parser.parse_args()

    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    root = args.work / "root"
    stage_rootfs(args.image, args.bin, root)
    rootfs, results = args.work / "rootfs.img", args.work / "results.img"
    make_ext4(rootfs, "psroot", tree_mb(root) + 256, root)
    shutil.rmtree(root)
    make_ext4(results, "psresults", 256)

    print(f"systest: booting (timeout {args.timeout:.0f} s)", flush=True)
    ui = UiDriver(args.work)
    powered_off, seconds = boot(args.image, rootfs, results, args.work, args.timeout, ui)
    print(f"systest: guest ran {seconds:.0f} s" + ("" if powered_off else ", killed at the timeout"))
    out = args.work / "results"
    out.mkdir()
    run("debugfs", "-R", f"rdump /out {out}", str(results), capture_output=True)
    out = out / "out"

    checks: list[tuple[str, str | None]] = []
    report = out / "report"
    for line in report.read_text().splitlines() if report.is_file() else []:
        verdict, _, rest = line.partition(" ")
        name, _, why = rest.partition(": ")
        checks.append((name, None if verdict == "PASS" else why or "failed"))
    if any(name == "dbus-generate-png" and why is None for name, why in checks):
        checks.append(("png-metadata", check_png(out / "generated.png")))
    if any(name == "provenance-on-device" and why is None for name, why in checks):
        checks.append(("provenance-read-by-peers",
                       check_provenance(out / "generated.png", out / "device-ca.pem")))
    if any(name == "camera-img2img" and why is None for name, why in checks):
        checks.append(("camera-frame-is-vivid-colour-bars",
                       check_camera(out / "camera.png", out / "camera-source.png")))
    checks += ui.checks
    expected = {"unit-active-via-sd-notify", "dbus-generate-png", "bad-request-refused-service-stays-up",
                "job-survives-restart", "png-metadata", "touch-ui-generate", "display-shows-ui",
                "touch-ui-viewer", "camera-img2img", "camera-frame-is-vivid-colour-bars",
                "touch-ui-camera", "provenance-on-device", "provenance-read-by-peers",
                "licences-installed"}
    for missing in sorted(expected - {name for name, _ in checks}):
        checks.append((missing, "never ran (guest stopped or was killed first)"))
    if not powered_off:
        checks.append(("guest-powers-off", f"still running after {args.timeout:.0f} s"))

    licences = out / "licences.txt"
    if licences.is_file():
        print("systest: the guest's /usr/share/doc/pocket-studio:")
        print("\n".join(f"  {line}" for line in licences.read_text().splitlines()))
    for name, why in checks:
        print(f"systest: {'PASS' if why is None else 'FAIL'} {name}" + ("" if why is None else f": {why}"))
    failed = [name for name, why in checks if why is not None]
    if failed:
        for journal in ("journal-pocket-studio.txt", "journal.txt"):
            if (out / journal).is_file():
                print(f"---- guest {journal} (last 80 lines)")
                print("\n".join((out / journal).read_text(errors="replace").splitlines()[-80:]))
                break
        else:
            print("---- guest console (last 80 lines)")
            console = args.work / "console.log"
            print("\n".join(console.read_text(errors="replace").splitlines()[-80:]) if console.exists() else "(none)")
        print(f"systest: FAILED ({len(failed)} of {len(checks)} checks)")
        return 1
    print(f"systest: PASS ({len(checks)} checks)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
