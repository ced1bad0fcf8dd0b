#!/bin/sh
# root=hostroot is ours: without this dracut stops ("Don't know how to handle 'root=hostroot'").
[ "$(getarg root=)" = hostroot ] && rootok=1
