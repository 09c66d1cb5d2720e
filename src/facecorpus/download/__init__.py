"""Polite, SSRF-safe image downloads for web-link sources (LAION, FaceCaption-15M).

    addresses.py   which IP addresses may be contacted (public only, unless a recipe allows a network)
    politeness.py  per-domain concurrency cap and back-off shared by all threads of a worker
    fetch.py       one URL → bytes or a reason: pinned-IP connections, every redirect hop re-checked,
                   timeouts, retries with back-off, honest User-Agent, X-Robots-Tag opt-out, size cap
    images.py      decode check (`not_image`) and optional downscale, in img2dataset's resize modes
    download_rows.py   the Beam DoFn that downloads a batch of rows concurrently → WorkItems and Rejects

img2dataset's own `download_image` is not used for the network part: it follows redirects inside
urllib without looking at the addresses they point to, has no per-domain cap and no back-off. Its
X-Robots-Tag reading and its resize modes are kept (written here: img2dataset's package pins a
webdataset 0.2 that cannot be installed beside the webdataset 1.x facecorpus reads shards with).
"""
