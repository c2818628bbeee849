# Each hole in a repo's archived WAL. Input: "<stanza> <archive id> <file name> <archived at>" per
# archived segment, sorted. Output: "<stanza> <archive id> <last segment before the hole> <first
# after it> <archived at> <archived at>". pgBackRest names a segment <24 hex digits>-<sha1>[.<ext>];
# a timeline's segments follow each other, 256 to a log file (16 MiB segments). Partial segments,
# history files and backup labels are not counted. Used by probe.sh (local and hosted repos) and
# s3-state.sh (S3 repos): one rule for every repo.
function h(x, i, n) {
  n = 0
  for (i = 1; i <= length(x); i++) n = n * 16 + index("0123456789ABCDEF", substr(x, i, 1)) - 1
  return n
}
$1 != ps || $2 != pid { ptl = ""; ps = $1; pid = $2 }
substr($3, 1, 24) ~ /^[0-9A-F]+$/ && substr($3, 25, 1) == "-" {
  name = substr($3, 1, 24); tl = substr(name, 1, 8); n = h(substr(name, 9, 8)) * 256 + h(substr(name, 17, 8))
  if (tl == ptl && n > pn + 1) print $1, $2, pname, name, pt, $4
  ptl = tl; pn = n; pname = name; pt = $4
}
