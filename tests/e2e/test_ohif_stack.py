"""End-to-end: Orthanc's DICOMweb serves our studies, and in headless Chromium the OHIF viewer served by MONAI Label
shows the LiTS CT, takes a point prompt on the liver in the MONAI Label panel and displays the segmentation the
app returns.

What the browser test asserts, and why each check is robust:

* geometry: the voxel values OHIF loaded (``voxelManager.getAtIJK``) equal our HU volume at 300 sampled ``(i, j, k)``
  indices, so OHIF's voxel indices, MONAI Label's and :func:`stack_studies.lits_reference_mask` agree;
* the prompt: OHIF's ``/infer`` request carries a point inside the reference liver (within a voxel of the one we
  clicked) and the model's ``liver`` label index;
* the result reaches the screen: the request answers 200 with an NRRD whose size is the series', OHIF's labelmap
  becomes exactly the returned ``liver`` mask (voxel for voxel), and the axial canvas gains coloured overlay pixels
  (the CT itself renders in grey).

The Dice of the displayed mask against the LiTS reference is reported (``.stack/e2e/ohif_point_prompt.json``), not
asserted: it measures the model, which has its own benchmarks. OHIF's services are reached through the React
props of the MONAI Label panel (``servicesManager``), the documented OHIF service API from there on.

The screenshot goes to ``.stack/e2e/ohif_point_prompt.png``; with ``MEDPCLIP_UPDATE_DOCS_IMAGES=1`` also to
``docs/images/ohif_point_prompt.png``.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
INTERACTIVE_TYPES = ("vista3d", "deepgrow", "deepedit")
# console lines OHIF prints in normal operation (left out of failure messages)
BROWSER_NOISE = ("Crosshairs mapping", "Image not found for imageId", "GL Driver Message", "/train/?check_if_running")

# Installed before OHIF's own scripts: records /infer/ requests (params, status, a copy of the response) and errors.
HOOK_JS = r"""
window.__e2e = {xhr: [], errors: []};
window.addEventListener('error', e => window.__e2e.errors.push(String(e.message)));
window.addEventListener('unhandledrejection',
  e => window.__e2e.errors.push(String(e.reason && (e.reason.stack || e.reason))));
const _open = XMLHttpRequest.prototype.open, _send = XMLHttpRequest.prototype.send;
XMLHttpRequest.prototype.open = function (method, url) {
  this.__e2e = {method: method, url: String(url)};
  return _open.apply(this, arguments);
};
XMLHttpRequest.prototype.send = function (body) {
  const info = this.__e2e || {};
  if (info.url && info.url.indexOf('/infer/') >= 0) {
    try { if (body instanceof FormData) info.params = body.get('params'); } catch (err) {}
    window.__e2e.xhr.push(info);
    this.addEventListener('loadend', () => {
      info.status = this.status;
      const r = this.response;
      info.body = r instanceof ArrayBuffer ? r.slice(0) : null;
      info.bytes = info.body ? info.body.byteLength : 0;
      info.done = true;
    });
  }
  return _send.apply(this, arguments);
};
window.__e2eServices = function () {
  const el = document.querySelector('.monaiLabelPanel');
  if (!el) return null;
  const key = Object.keys(el).find(k => k.startsWith('__reactFiber$') || k.startsWith('__reactInternalInstance$'));
  for (let f = key && el[key]; f; f = f.return) {
    const p = f.memoizedProps;
    if (p && p.servicesManager) return p.servicesManager.services;
  }
  return null;
};
window.__e2eViewport = function (id) {
  const s = window.__e2eServices();
  return s ? s.cornerstoneViewportService.getCornerstoneViewport(id) : null;
};
window.__e2eBase64 = function (bytes) {
  let s = '';
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  return btoa(s);
};
window.__e2eColouredPixels = function (id) {
  const vp = window.__e2eViewport(id);
  const c = vp.canvas, ctx = c.getContext('2d');
  const d = ctx.getImageData(0, 0, c.width, c.height).data;
  let n = 0;
  for (let p = 0; p < d.length; p += 4) {
    if (Math.max(Math.abs(d[p] - d[p + 1]), Math.abs(d[p + 1] - d[p + 2]), Math.abs(d[p] - d[p + 2])) > 40) n++;
  }
  return n;
};
"""

SAMPLE_VOXELS_JS = """
const vp = window.__e2eViewport(arguments[0]);
if (!vp) return null;
const data = vp.getImageData();
if (!data || !data.voxelManager) return null;
return {dims: Array.from(data.dimensions), values: arguments[1].map(p => data.voxelManager.getAtIJK(p[0], p[1], p[2]))};
"""

JUMP_TO_VOXEL_JS = """
const vp = window.__e2eViewport(arguments[0]);
const data = vp.getImageData();
const w = data.imageData.indexToWorld(arguments[1]);
const cam = vp.getCamera(), n = cam.viewPlaneNormal;
const delta = (w[0] - cam.focalPoint[0]) * n[0] + (w[1] - cam.focalPoint[1]) * n[1] + (w[2] - cam.focalPoint[2]) * n[2];
vp.setCamera({focalPoint: cam.focalPoint.map((v, a) => v + delta * n[a]),
              position: cam.position.map((v, a) => v + delta * n[a])});
vp.render();
const c = vp.worldToCanvas(w), rect = vp.canvas.getBoundingClientRect();
return {x: rect.left + c[0], y: rect.top + c[1], normal: Array.from(n)};
"""

LABELMAP_JS = """
const s = window.__e2eServices();
const volume = s.segmentationService.getLabelmapVolume('1');
if (!volume) return null;
const a = volume.voxelManager.getCompleteScalarDataArray();
let n = 0;
for (let i = 0; i < a.length; i++) if (a[i]) n++;
const segments = {};
for (const seg of s.segmentationService.getSegmentations()) {
  for (const g of Object.values(seg.segments || {})) if (g) segments[g.label] = g.segmentIndex;
}
if (!arguments[0]) return {count: n, segments: segments};
return {count: n, segments: segments, data: window.__e2eBase64(new Uint8Array(a.buffer, a.byteOffset, a.byteLength))};
"""


def get_json(url: str, timeout: float = 30):
    """GET a JSON answer (requests, because MONAI Label's DICOMweb proxy passes Orthanc's gzip encoding on)."""
    import requests

    response = requests.get(url, timeout=timeout)
    response.raise_for_status()
    return response.json() if response.content else []


def tag(item: dict, key: str):
    values = item.get(key, {}).get("Value") or [None]
    return values[0]


def wait_until(predicate, timeout: float, interval: float = 0.5, message: str = "timed out"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(message)
        time.sleep(interval)


def test_orthanc_dicomweb_lists_the_studies(orthanc, stack_studies):
    info = stack_studies.info()
    lits = info["lits"]
    studies = get_json(f"{orthanc.orthanc_url}/dicom-web/studies")
    uids = {tag(s, "0020000D") for s in studies}
    assert {lits["study_uid"], *(p["study_uid"] for p in info["pydicom"])} <= uids

    series = get_json(f"{orthanc.orthanc_url}/dicom-web/studies/{lits['study_uid']}/series?Modality=CT")
    assert [tag(s, "0020000E") for s in series] == [lits["series_uid"]]  # (a saved label adds a SEG series)
    assert tag(series[0], "00080060") == "CT"
    assert int(tag(series[0], "00201209")) == lits["instances"] == 128  # NumberOfSeriesRelatedInstances
    instances = get_json(
        f"{orthanc.orthanc_url}/dicom-web/studies/{lits['study_uid']}/series/{lits['series_uid']}/instances"
    )
    assert len(instances) == 128

    # the datastore filter start_stack.sh gives MONAI Label: Orthanc reads "CT,MR" as a list of values
    modalities = sorted(tag(s, "00080060") for s in get_json(f"{orthanc.orthanc_url}/dicom-web/series?Modality=CT,MR"))
    assert modalities == ["CT", "CT", "MR"]


def test_orthanc_series_geometry_matches_the_volume(orthanc, stack_studies):
    """WADO-RS metadata of the first and last slices: LPS positions, orientation, spacing, rescale."""
    lits = stack_studies.info()["lits"]
    vol = stack_studies.lits_lps_volume()
    meta = get_json(f"{orthanc.orthanc_url}/dicom-web/studies/{lits['study_uid']}/series/{lits['series_uid']}/metadata")
    by_number = {int(tag(m, "00200013")): m for m in meta}
    first, last = by_number[1], by_number[128]
    np.testing.assert_allclose(first["00200032"]["Value"], vol.origin, atol=1e-3)
    np.testing.assert_allclose(last["00200032"]["Value"], vol.origin + 127 * vol.spacing[2] * vol.axes[2], atol=1e-3)
    np.testing.assert_allclose(first["00200037"]["Value"], [1, 0, 0, 0, 1, 0], atol=1e-6)  # axial, LPS
    np.testing.assert_allclose(first["00280030"]["Value"], [1, 1])
    assert float(tag(first, "00281053")) == 0.125 and float(tag(first, "00281052")) == -1024


def test_monailabel_serves_ohif_and_proxies_dicomweb(monailabel, stack_studies):
    lits = stack_studies.info()["lits"]
    info = get_json(f"{monailabel.monailabel_url}/info/")
    # OHIF's MONAI Label panel appends to the top-level label list: it must be a list, not a dict
    assert isinstance(info.get("labels"), list), f"/info/ labels should be a list for OHIF, got {info.get('labels')!r}"
    interactive = [m for m, v in info["models"].items() if v.get("type") in INTERACTIVE_TYPES]
    assert interactive, f"no interactive model in /info/: {sorted(info['models'])}"
    with urllib.request.urlopen(f"{monailabel.monailabel_url}/ohif/", timeout=30) as response:
        assert b"<html" in response.read().lower()
    studies = get_json(f"{monailabel.monailabel_url}/proxy/dicom/qido/studies")
    assert lits["study_uid"] in {tag(s, "0020000D") for s in studies}


def _interactive_model(info: dict) -> tuple[str, int]:
    """(model name, index of 'liver' in its labels): ``medpclip_seg`` when offered, else the first vista3d model."""
    candidates = [m for m, v in info["models"].items() if v.get("type") == "vista3d"]
    assert candidates, f"no vista3d model in /info/: {sorted(info['models'])}"
    model = "medpclip_seg" if "medpclip_seg" in candidates else candidates[0]
    labels = info["models"][model]["labels"]
    labels = labels if isinstance(labels, dict) else {name: i + 1 for i, name in enumerate(labels)}
    assert "liver" in labels, f"{model} has no 'liver' label: {labels}"
    return model, int(labels["liver"])


def _read_nrrd(data: bytes) -> tuple[np.ndarray, dict]:
    import nrrd

    assert data[:4] == b"NRRD", (
        f"OHIF reads the /infer result as NRRD (it sends result_extension=.nrrd), got {data[:16]!r} "
        "(a gzip stream starting 1f8b is probably .nii.gz)"
    )
    with tempfile.NamedTemporaryFile(suffix=".nrrd") as handle:
        handle.write(data)
        handle.flush()
        array, header = nrrd.read(handle.name)
    return np.asarray(array), header


def _browser_log(driver) -> str:
    try:
        entries = driver.get_log("browser")
    except Exception:  # diagnostics only
        return ""
    lines = []
    for entry in entries:
        message = entry["message"][:300]
        if entry["level"] in ("SEVERE", "WARNING") and not any(n in message for n in BROWSER_NOISE):
            if message not in lines:
                lines.append(message)
    return "\n".join(lines[-15:])


def test_ohif_point_prompt_segments_the_liver(monailabel, chrome, stack_studies):
    from scipy import ndimage
    from selenium.webdriver.common.actions.action_builder import ActionBuilder
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    started = time.monotonic()
    lits = stack_studies.info()["lits"]
    vol = stack_studies.lits_lps_volume()
    reference = stack_studies.lits_reference_mask("liver")  # [k, j, i]
    info = get_json(f"{monailabel.monailabel_url}/info/")
    model, liver_index = _interactive_model(info)

    # the click: the deepest liver voxel of the largest axial liver slice (the demo's click, make demo)
    k = int(np.argmax(reference.sum((1, 2))))
    depth = ndimage.distance_transform_edt(reference[k])
    j, i = (int(v) for v in np.unravel_index(np.argmax(depth), depth.shape))
    target = [i, j, k]

    driver = chrome
    driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": HOOK_JS})
    # the MONAI Label panel takes its server URL from this cookie (default: port 8000 of the page's host); typing it
    # into the panel is not enough, as its first "connect" still uses the previous URL (React state lag)
    driver.get(f"{monailabel.monailabel_url}/info/")
    driver.add_cookie({"name": "MONAILABEL_SERVER_URL", "value": monailabel.monailabel_url + "/", "path": "/"})
    driver.get(f"{monailabel.monailabel_url}/ohif/monai-label?StudyInstanceUIDs={lits['study_uid']}")

    def fail(message: str):
        pytest.fail(
            f"{message}\n--- browser errors\n{driver.execute_script('return window.__e2e && window.__e2e.errors')}"
            f"\n--- browser console\n{_browser_log(driver)}"
        )

    # 1. the CT renders, with our voxel values at OHIF's (i, j, k)
    rng = np.random.default_rng(0)
    samples = np.stack([rng.integers(0, n, 300) for n in vol.image.shape], axis=1).tolist()
    expected = np.array([vol.image[a, b, c] for a, b, c in samples])

    def volume_loaded():
        got = driver.execute_script(SAMPLE_VOXELS_JS, "mpr-axial", samples)
        if not got:
            return None
        values = np.array([np.nan if v is None else v for v in got["values"]], dtype=float)
        return got if np.allclose(values, expected, atol=1e-3) else None

    try:
        loaded = wait_until(volume_loaded, 120, 1.0, "OHIF did not show the LiTS volume with the expected voxel values")
    except AssertionError as exc:
        fail(str(exc))
    assert loaded["dims"] == list(vol.image.shape)
    monailabel.timings["ohif volume loaded"] = time.monotonic() - started
    for button in driver.find_elements(By.XPATH, "//button[normalize-space()='Confirm and Hide']"):
        button.click()  # the "investigational use" banner covers the lower viewports

    # 2. the MONAI Label panel: connect to our server, open Point Prompts, pick the model and the label
    field = wait_until(lambda: driver.find_elements(By.ID, "monailabelServerURL"), 30, message="no MONAI Label panel")
    assert field[0].get_attribute("value") == monailabel.monailabel_url + "/"
    driver.find_element(By.CSS_SELECTOR, ".settingsTable button.actionButton").click()
    tab_xpath = "//label[contains(@class, 'tab-label') and normalize-space()='Point Prompts']"

    def point_prompts_tab():
        if driver.execute_script("return window.__e2e.errors.length"):
            raise AssertionError("the MONAI Label panel failed after connecting to the server")
        return driver.find_elements(By.XPATH, tab_xpath)

    try:
        tab = wait_until(point_prompts_tab, 60, message="no Point Prompts tab in the MONAI Label panel")[0]
    except AssertionError as exc:
        fail(str(exc))
    tab.click()
    panel = f"//label[@for='{tab.get_attribute('for')}']/following-sibling::div[contains(@class, 'tab-content')]"
    Select(driver.find_element(By.XPATH, f"{panel}//select")).select_by_value(model)
    row = driver.find_element(By.XPATH, f"{panel}//tr[contains(@class, 'clickable-row')][normalize-space()='liver']")
    driver.execute_script("arguments[0].click();", row)  # a notification toast may cover the row

    # 3. show slice k in the axial viewport and click on the liver voxel
    where = driver.execute_script(JUMP_TO_VOXEL_JS, "mpr-axial", target)
    assert abs(abs(where["normal"][2]) - 1) < 1e-6, f"mpr-axial is not axial: normal {where['normal']}"
    time.sleep(0.5)
    coloured_before = driver.execute_script("return window.__e2eColouredPixels('mpr-axial')")
    actions = ActionBuilder(driver)
    actions.pointer_action.move_to_location(int(round(where["x"])), int(round(where["y"])))
    actions.pointer_action.click()
    actions.perform()
    time.sleep(0.5)

    # 4. run the model and wait for OHIF's request to /infer/
    run = driver.find_element(By.XPATH, f"{panel}//button[@title='Run PointPrompts']")
    driver.execute_script("arguments[0].click();", run)  # (a toast may cover it too)
    infer_started = time.monotonic()
    try:
        wait_until(
            lambda: driver.execute_script("const x = window.__e2e.xhr; return x.length && x[x.length - 1].done"),
            300,
            message="OHIF's /infer/ request did not finish in 300 s",
        )
    except AssertionError as exc:
        fail(str(exc))
    monailabel.timings["point-prompt inference (browser)"] = time.monotonic() - infer_started
    request = driver.execute_script(
        "const x = window.__e2e.xhr[window.__e2e.xhr.length - 1];"
        "return {url: x.url, params: x.params, status: x.status,"
        " body: x.body ? window.__e2eBase64(new Uint8Array(x.body)) : null}"
    )
    if request["status"] != 200:
        body = base64.b64decode(request["body"] or b"")[:500]
        fail(f"/infer/{model} answered {request['status']}: {body!r}")
    assert f"/infer/{model}?" in request["url"] and lits["series_uid"] in request["url"]
    params = json.loads(request["params"])
    assert params["label_prompt"] == [liver_index] and params["point_labels"] == [1]
    [sent] = params["points"]
    assert max(abs(a - b) for a, b in zip(sent, target, strict=True)) <= 1, f"OHIF sent {sent}, we clicked {target}"
    assert reference[sent[2], sent[1], sent[0]], f"the prompt {sent} is outside the reference liver"

    # 5. the returned mask becomes OHIF's labelmap, voxel for voxel, and shows on the canvas
    returned, header = _read_nrrd(base64.b64decode(request["body"]))
    assert list(returned.shape) == list(vol.image.shape), f"result {returned.shape} vs series {vol.image.shape}"
    returned_liver = returned.ravel(order="F") == liver_index  # NRRD x fastest, like cornerstone's labelmap
    assert returned_liver.any(), f"{model} returned an empty liver mask for the prompt {sent}"
    try:
        wait_until(
            lambda: (lambda r: r if r and r["count"] else None)(driver.execute_script(LABELMAP_JS, False)),
            30,
            message="OHIF's labelmap stayed empty after the inference",
        )
    except AssertionError as exc:
        fail(str(exc))
    shown = driver.execute_script(LABELMAP_JS, True)
    labelmap = np.frombuffer(base64.b64decode(shown["data"]), dtype=np.uint8)
    assert labelmap.size == returned_liver.size
    assert set(np.unique(labelmap[labelmap > 0]).tolist()) == {shown["segments"]["liver"]}
    np.testing.assert_array_equal(labelmap > 0, returned_liver)
    try:
        coloured_after = wait_until(
            lambda: (lambda n: n if n > coloured_before + 50 else None)(
                driver.execute_script("return window.__e2eColouredPixels('mpr-axial')")
            ),
            20,
            message=f"no segmentation overlay on the axial canvas ({coloured_before} coloured pixels before)",
        )
    except AssertionError as exc:
        fail(str(exc))

    # 6. screenshot and report
    time.sleep(1.0)
    shot = monailabel.folder / "ohif_point_prompt.png"
    driver.save_screenshot(str(shot))
    if os.environ.get("MEDPCLIP_UPDATE_DOCS_IMAGES") == "1":
        shutil.copyfile(shot, ROOT / "docs" / "images" / "ohif_point_prompt.png")
    predicted = (labelmap > 0).reshape(reference.shape)
    dice = 2 * np.logical_and(predicted, reference).sum() / (predicted.sum() + reference.sum())
    report = {
        "model": model,
        "click_voxel_ijk": target,
        "sent_points": params["points"],
        "mask_voxels": int(predicted.sum()),
        "dice_vs_lits_liver": round(float(dice), 4),
        "slice_dice": round(
            float(2 * np.logical_and(predicted[k], reference[k]).sum() / (predicted[k].sum() + reference[k].sum())), 4
        ),
        "coloured_pixels_before_after": [coloured_before, coloured_after],
        "nrrd_encoding": header.get("encoding"),
        "timings_s": {key: round(value, 1) for key, value in monailabel.timings.items()},
    }
    (monailabel.folder / "ohif_point_prompt.json").write_text(json.dumps(report, indent=1))
    print(f"\n[e2e] OHIF point prompt: {json.dumps(report)}")
