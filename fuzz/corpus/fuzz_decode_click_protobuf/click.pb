
c-5573252a56606f93¼þê¶·3aff-48"off-2*u-1862
65.3.72.22:Mozilla/5.0 (X11; Linux x86_64)Bhttps://blog.example/postJsummerJbanner2RDE