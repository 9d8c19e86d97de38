// The page's client: upload (with progress) to /api/jobs, poll the job, show the result.
// Every error message comes from the server's JSON, so the page and the API say the same.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const dropZone = $("drop-zone");
  const input = $("file-input");
  const statusBox = $("status");
  const progress = $("progress");
  const statusText = $("status-text");
  const errorBox = $("error");
  const result = $("result");
  const viewer = $("viewer");
  const before = $("before-image");
  const after = $("after-image");
  const download = $("download");
  const info = $("result-info");
  const maxBytes = Number(document.body.dataset.maxBytes);
  const maxVideoBytes = Number(document.body.dataset.maxVideoBytes);
  const videoSuffixes = (document.body.dataset.videoSuffixes || "").split(",");
  const jobsUrl = document.body.dataset.jobsUrl;
  const POLL_MS = 300;
  let objectUrls = [];
  let busy = false;

  function setStatus(text, fraction) {
    statusBox.hidden = false;
    statusText.textContent = text;
    if (fraction === null) progress.removeAttribute("value"); // indeterminate
    else progress.value = fraction;
  }

  function showError(message) {
    statusBox.hidden = true;
    errorBox.textContent = message;
    errorBox.hidden = false;
  }

  function resetUrls() {
    objectUrls.forEach((url) => URL.revokeObjectURL(url));
    objectUrls = [];
  }

  function errorFrom(xhrOrResponseText, status) {
    try {
      return JSON.parse(xhrOrResponseText).error || `the server answered ${status}`;
    } catch (_) {
      return `the server answered ${status}: ${xhrOrResponseText.slice(0, 200)}`;
    }
  }

  // XMLHttpRequest, not fetch: only it reports upload progress.
  function upload(file) {
    return new Promise((resolve, reject) => {
      const form = new FormData();
      form.append("image", file, file.name);
      const xhr = new XMLHttpRequest();
      xhr.open("POST", jobsUrl);
      xhr.upload.onprogress = (event) => {
        if (!event.lengthComputable) return;
        const fraction = event.loaded / event.total;
        if (fraction < 1) setStatus(`Uploading… ${Math.round(100 * fraction)}%`, fraction);
        else if (isVideo(file)) setStatus("Finding the sharpest frame…", null); // the server decodes the clip
        else setStatus("Uploading… 100%", 1);
      };
      xhr.onload = () => {
        if (xhr.status === 202) resolve(JSON.parse(xhr.responseText));
        else reject(new Error(errorFrom(xhr.responseText, xhr.status)));
      };
      xhr.onerror = () =>
        reject(new Error("the upload failed: the server could not be reached or closed the connection"));
      xhr.send(form);
    });
  }

  function describe(job) {
    if (job.status === "queued") {
      return [job.queue_position > 0 ? `Waiting: ${job.queue_position} photo(s) ahead` : "Starting…", null];
    }
    if (job.passes_total > 1) {
      const tile = Math.min(job.passes_done + 1, job.passes_total);
      return [`Deblurring tile ${tile} of ${job.passes_total}…`, job.progress];
    }
    return ["Deblurring…", null];
  }

  async function waitFor(job) {
    for (;;) {
      const response = await fetch(job.status_url, { cache: "no-store" });
      const text = await response.text();
      if (!response.ok) throw new Error(errorFrom(text, response.status));
      job = JSON.parse(text);
      if (job.status === "done") return job;
      if (job.status === "failed") throw new Error(job.error);
      setStatus(...describe(job));
      await new Promise((r) => setTimeout(r, POLL_MS));
    }
  }

  function isVideo(file) {
    const dot = file.name.lastIndexOf(".");
    const suffix = dot >= 0 ? file.name.slice(dot).toLowerCase() : "";
    return file.type.startsWith("video/") || videoSuffixes.includes(suffix);
  }

  // "0:12.345" for a frame's time stamp in seconds.
  function clock(seconds) {
    const minutes = Math.floor(seconds / 60);
    return `${minutes}:${(seconds - 60 * minutes).toFixed(3).padStart(6, "0")}`;
  }

  async function deblur(file) {
    if (busy) return;
    errorBox.hidden = true;
    if (!file) return;
    const video = isVideo(file);
    const limitBytes = video ? maxVideoBytes : maxBytes;
    if (file.size > limitBytes) {
      const limit = `${Number((limitBytes / 1e6).toPrecision(3))} MB`;
      const what = video ? "a shorter clip" : "a smaller or more compressed photo";
      showError(`'${file.name}' is larger than this server's limit of ${limit}: upload ${what}`);
      return;
    }
    busy = true;
    dropZone.classList.add("busy");
    try {
      setStatus("Uploading…", 0);
      const done = await waitFor(await upload(file));
      setStatus("Downloading the result…", null);
      const response = await fetch(done.result_url);
      if (!response.ok) throw new Error(errorFrom(await response.text(), response.status));
      const blob = await response.blob();
      resetUrls();
      // A video's "before" is the chosen frame as the clip has it, which the server kept.
      let source = file;
      if (done.source_url) {
        const frame = await fetch(done.source_url);
        if (!frame.ok) throw new Error(errorFrom(await frame.text(), frame.status));
        source = await frame.blob();
      }
      const beforeUrl = URL.createObjectURL(source);
      const afterUrl = URL.createObjectURL(blob);
      objectUrls = [beforeUrl, afterUrl];
      await Promise.all([load(before, beforeUrl), load(after, afterUrl)]);
      download.href = afterUrl;
      download.download = done.download_name;
      const tiles = done.passes_total > 1 ? `${done.passes_total} tiles · ` : "";
      const when = done.frame_seconds === null ? "" : `frame at ${clock(done.frame_seconds)} · `;
      info.textContent = `${when}${done.width}×${done.height} pixels · ${tiles}${done.seconds.toFixed(1)} s`;
      statusBox.hidden = true;
      result.hidden = false;
    } catch (error) {
      showError(error.message);
    } finally {
      busy = false;
      dropZone.classList.remove("busy");
      input.value = "";
    }
  }

  function load(img, url) {
    return new Promise((resolve) => {
      img.onload = img.onerror = resolve;
      img.src = url;
    });
  }

  input.addEventListener("change", () => deblur(input.files[0]));

  // A photo dropped anywhere on the page is taken, so a near miss never navigates away.
  ["dragenter", "dragover"].forEach((type) =>
    window.addEventListener(type, (event) => {
      event.preventDefault();
      dropZone.classList.add("dragging");
    }),
  );
  window.addEventListener("dragleave", (event) => {
    if (event.relatedTarget === null) dropZone.classList.remove("dragging");
  });
  window.addEventListener("drop", (event) => {
    event.preventDefault();
    dropZone.classList.remove("dragging");
    deblur(event.dataTransfer.files[0]);
  });

  $("slider").addEventListener("input", (event) => {
    viewer.style.setProperty("--split", `${event.target.value}%`);
  });

  document.querySelectorAll("[data-mode]").forEach((button) =>
    button.addEventListener("click", () => {
      viewer.classList.remove("compare", "side");
      viewer.classList.add(button.dataset.mode);
      document.querySelectorAll("[data-mode]").forEach((other) => {
        other.setAttribute("aria-pressed", String(other === button));
      });
    }),
  );
})();
