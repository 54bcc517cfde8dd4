"""What the per-call report and the batch index share: escaping, file names, links to the
audio, and the page frame with its inline CSS and scripts (no network, no external files).
"""

from __future__ import annotations

import html
import os
from pathlib import Path
from urllib.parse import quote


def esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def safe_name(call_id: str) -> str:
    if not call_id or Path(call_id).name != call_id or call_id in (".", ".."):
        raise ValueError(
            f"call_id {call_id!r} cannot name a report file; it must be a plain name "
            "(the content hash from callqa.files.content_id)"
        )
    return call_id


def audio_src(audio_path: str | Path, out_dir: Path) -> str:
    """URL of the original audio as seen from a page in `out_dir`.

    A relative path keeps a report folder and its audio movable together; across drives
    (Windows) no relative path exists, so an absolute file:// URI is used instead.
    """
    target = os.path.abspath(audio_path)
    try:
        rel = os.path.relpath(target, os.path.abspath(out_dir))
    except ValueError:
        return Path(target).as_uri()
    return quote(rel.replace(os.sep, "/"))


def page(title: str, body: str, script: str) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{CSS}</style></head>"
        f"<body>\n{body}\n<script>{script}</script></body></html>\n"
    )


CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;
 margin:0 auto;max-width:1060px;padding:0 16px 40px;color:#1d1d1f;background:#fff}
h1{font-size:22px;margin:18px 0 10px}h2{font-size:17px;margin:26px 0 8px;
 border-bottom:1px solid #ddd;padding-bottom:3px}
code{font-family:ui-monospace,Menlo,Consolas,"DejaVu Sans Mono",monospace;font-size:12.5px}
.muted{color:#6b6b6b;font-size:12.5px}
.headgrid{display:flex;gap:18px;align-items:flex-start}
.scorebox{min-width:170px;padding:10px 14px;border-radius:8px;border:2px solid;text-align:center}
.scorebox.pass{border-color:#2e7d32}.scorebox.warn{border-color:#e0a800}
.scorebox.fail{border-color:#c62828}
.score{font-size:38px;font-weight:700}.score span{font-size:16px;color:#6b6b6b}
table{border-collapse:collapse}.kv th{text-align:left;padding:2px 12px 2px 0;color:#555;
 font-weight:600;vertical-align:top;white-space:nowrap}.kv td{padding:2px 0;word-break:break-all}
.grid{width:100%}.grid th,.grid td{border:1px solid #ddd;padding:4px 7px;vertical-align:top}
.grid th{background:#f4f4f6;text-align:left}.num{text-align:right;white-space:nowrap}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12px;font-weight:600;
 white-space:nowrap}
.badge.pass{background:#e3f2e5;color:#1b5e20}.badge.fail{background:#fde2e2;color:#b71c1c}
.badge.na{background:#ececec;color:#555}
tr.check.fail td{background:#fff6f6}
ul.ev{margin:0;padding-left:16px}ul.ev li{margin:1px 0}
.player{position:sticky;top:0;z-index:5;background:#fff;padding:8px 0;
 border-bottom:1px solid #e5e5e5;display:flex;align-items:center;gap:12px}
.player audio{width:520px;max-width:100%}
.fig{margin:8px 0}.fig figcaption{font-weight:600;font-size:13px}
.figwrap{position:relative;cursor:crosshair}.figwrap img{width:100%;height:auto;display:block}
.playhead{position:absolute;top:0;bottom:0;width:2px;background:#00b050;display:none;
 pointer-events:none}
.seg{display:flex;gap:10px;align-items:baseline;padding:3px 8px;margin:2px 0;cursor:pointer;
 border-left:4px solid;border-radius:3px}
.seg:hover,.seg:focus{background:#f1f5fb;outline:none}
.seg.flagged{background:#fdecea}.seg.flagged:hover{background:#fad4cf}
.seg.playing{box-shadow:inset 0 0 0 2px #00b050}
.ts{font-family:ui-monospace,Menlo,Consolas,"DejaVu Sans Mono",monospace;font-size:12px;
 color:#555;white-space:nowrap}
.role{font-weight:600;font-size:12px;text-transform:uppercase;min-width:68px}
.text{flex:1}
mark{background:#ffcc80;padding:0 2px;border-radius:2px}
.flag{background:#c62828;color:#fff;font-size:11px;padding:1px 6px;border-radius:8px;
 white-space:nowrap}
a.seek{color:#0b57d0;text-decoration:none;font-family:ui-monospace,Menlo,Consolas,monospace;
 font-size:12px}a.seek:hover{text-decoration:underline}
.metrics{display:grid;grid-template-columns:1.3fr 1fr;gap:18px;align-items:start}
.chip{display:inline-block;margin:2px 2px;padding:0 6px;border-radius:8px}
.chip.silence{background:#fbefc6}.chip.overtalk{background:#ead9f2}
table.sortable th{cursor:pointer;user-select:none}
th.sorted-asc::after{content:" \\25B2"}th.sorted-desc::after{content:" \\25BC"}
tr.crit td{background:#fff4f4}
"""

REPORT_JS = """
(function(){
var a=document.getElementById('player');
function seek(t){if(!a)return;a.currentTime=t;var p=a.play();if(p&&p.catch)p.catch(function(){});}
document.querySelectorAll('[data-t]').forEach(function(el){
 el.addEventListener('click',function(ev){ev.preventDefault();seek(parseFloat(el.dataset.t));});
 el.addEventListener('keydown',function(ev){if(ev.key==='Enter'||ev.key===' '){
  ev.preventDefault();seek(parseFloat(el.dataset.t));}});
});
// data-l / data-r: the axes' left and right edges as fractions of the image width.
function frac(w,t){var L=parseFloat(w.dataset.l),R=parseFloat(w.dataset.r);
 return L+t/parseFloat(w.dataset.dur)*(R-L);}
document.querySelectorAll('.figwrap').forEach(function(w){
 w.addEventListener('click',function(ev){var r=w.getBoundingClientRect();
  var L=parseFloat(w.dataset.l),R=parseFloat(w.dataset.r);
  var f=((ev.clientX-r.left)/r.width-L)/(R-L);
  if(f>=0&&f<=1)seek(f*parseFloat(w.dataset.dur));});
});
var segs=[].slice.call(document.querySelectorAll('.seg'));
if(a)a.addEventListener('timeupdate',function(){var t=a.currentTime;
 document.querySelectorAll('.figwrap').forEach(function(w){var h=w.querySelector('.playhead');
  h.style.display='block';h.style.left=(frac(w,t)*100)+'%';});
 segs.forEach(function(s){
  s.classList.toggle('playing',t>=parseFloat(s.dataset.t)&&t<parseFloat(s.dataset.e));});
});
})();
"""

INDEX_JS = """
document.querySelectorAll('table.sortable').forEach(function(tb){
 var ths=tb.querySelectorAll('th');
 ths.forEach(function(th,i){th.addEventListener('click',function(){
  var asc=!th.classList.contains('sorted-asc');
  ths.forEach(function(h){h.classList.remove('sorted-asc','sorted-desc');});
  th.classList.add(asc?'sorted-asc':'sorted-desc');
  var num=th.dataset.type==='num',body=tb.tBodies[0];
  var rows=[].slice.call(body.rows);
  rows.sort(function(x,y){var u=x.cells[i].dataset.v,v=y.cells[i].dataset.v;
   var c=num?parseFloat(u)-parseFloat(v):u.localeCompare(v);return asc?c:-c;});
  rows.forEach(function(r){body.appendChild(r);});
 });});
});
"""
